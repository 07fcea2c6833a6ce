// Package s3test runs a real S3 server for tests: versitygw with its posix
// backend, one process per test binary, listening on 127.0.0.1 and keeping
// its buckets in a temporary directory. Start returns where it is; Bucket
// creates a fresh bucket for one test, so that parallel tests never share
// one.
//
// The server binary is built once, with `go install`, into a tools cache
// ($SLUICE_TOOLS, else the user cache directory's sluice-tools) that
// scripts/s3-deps.sh fills too; a test that finds it missing builds it,
// and fails, never skips, when it cannot. The process is killed when the
// test binary exits (Linux's parent-death signal), and the directories
// of earlier, dead, runs are removed by the next Start.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Version is the versitygw release the tests run; scripts/s3-deps.sh
// builds the same one.
const Version = "v1.8.0"

const (
	module     = "github.com/versity/versitygw/cmd/versitygw"
	dirPrefix  = "sluice-s3test-"
	readyAfter = 60 * time.Second
)

var (
	once   sync.Once
	srv    server
	srvErr error
	seq    atomic.Int64
)

type server struct {
	endpoint, accessKey, secretKey string
	root                           string   // the posix backend's directory
	args                           []string // extra flags, before the backend's
	cmd                            *exec.Cmd
}

// Start starts the test binary's S3 server if it is not running yet, and
// returns its endpoint and root credentials.
func Start(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		t.Fatalf("s3test: %v", srvErr)
	}
	return srv.endpoint, srv.accessKey, srv.secretKey
}

// Bucket creates an empty bucket with a name of its own on the server
// that Start runs, and removes it with its content when t ends.
func Bucket(t testing.TB) string {
	t.Helper()
	endpoint, ak, sk := Start(t)
	name := fmt.Sprintf("t%d-%s", seq.Add(1), strings.ToLower(rand.Text()[:12]))
	c := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: ak, SecretAccessKey: sk}, nil
		}),
	})
	if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("s3test: creating bucket %s: %v", name, err)
	}
	// The posix backend keeps a bucket as a directory: removing it is
	// quicker than emptying it through the API, and takes incomplete
	// uploads with it.
	t.Cleanup(func() { os.RemoveAll(filepath.Join(srv.root, name)) })
	return name
}

// Binary returns the path of the versitygw binary, building it into the
// tools cache when it is not there.
func Binary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	dir, err := toolsDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "versitygw-"+Version, "versitygw")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Into a directory of its own and then renamed, so that test
	// binaries building at once do not see each other's half-written file.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", module+"@"+Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building versitygw %s failed (run `source scripts/s3-deps.sh` to see why; it needs Go and the module proxy): %v\n%s", Version, err, tail(out))
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		if _, serr := os.Stat(bin); serr == nil {
			return bin, nil // another test binary was quicker
		}
		return "", err
	}
	return bin, nil
}

// toolsDir is where scripts/s3-deps.sh puts its builds too.
func toolsDir() (string, error) {
	if d := os.Getenv("SLUICE_TOOLS"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no tools cache: set SLUICE_TOOLS (%w)", err)
	}
	return filepath.Join(cache, "sluice-tools"), nil
}

// Server is a dedicated S3 server, for a test that needs flags of its own.
type Server struct {
	Endpoint, AccessKey, SecretKey string
}

// StartServer starts a server of the test's own with extra versitygw
// flags (such as --event-nats-url), stopped when t ends. Make buckets
// on it with any S3 client.
func StartServer(t testing.TB, args ...string) Server {
	t.Helper()
	s, err := startWith(args)
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		os.RemoveAll(filepath.Dir(s.root))
	})
	return Server{Endpoint: s.endpoint, AccessKey: s.accessKey, SecretKey: s.secretKey}
}

// CreateBucket creates a bucket on a server StartServer runs.
func CreateBucket(ctx context.Context, s Server, name string) error {
	c := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}, nil
		}),
	})
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name})
	return err
}

func start() (server, error) { return startWith(nil) }

func startWith(args []string) (server, error) {
	bin, err := Binary()
	if err != nil {
		return server{}, err
	}
	removeStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return server{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return server{}, err
	}
	s := server{
		accessKey: "sluice" + strings.ToLower(rand.Text()[:8]),
		secretKey: rand.Text(),
		root:      filepath.Join(dir, "root"),
		args:      args,
	}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		return server{}, err
	}
	// A port that was free a moment ago may be taken before the server
	// binds it; then try another.
	for try := 0; ; try++ {
		addr, err := freeAddr()
		if err != nil {
			return server{}, err
		}
		s.endpoint = "http://" + addr
		s.cmd, err = run(bin, addr, s, filepath.Join(dir, "versitygw.log"))
		if err == nil || try == 2 {
			return s, err
		}
	}
}

// run starts versitygw on addr and waits until it answers.
func run(bin, addr string, s server, logPath string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--access", s.accessKey, "--secret", s.secretKey, "--port", addr, "--quiet"}, s.args...)
	cmd := exec.Command(bin, append(args, "posix", s.root)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"HOME=" + filepath.Dir(s.root)} // none of the caller's VGW_ settings
	dieWithParent(cmd)

	exited := make(chan error, 1)
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits, so that thread stays with this goroutine, which
		// lives as long as the child does.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
		logf.Close()
	}()
	if err := <-started; err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}

	deadline := time.Now().Add(readyAfter)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("versitygw exited before it answered on %s (%v):\n%s", addr, err, tail(log))
		default:
		}
		// Any HTTP answer, such as AccessDenied, shows it is serving.
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("versitygw did not answer on %s within %v:\n%s", addr, readyAfter, tail(log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// removeStale removes the directories of earlier test binaries that have
// exited, whose servers died with them.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || pid <= 0 {
			continue
		}
		if !alive(pid) {
			os.RemoveAll(d)
		}
	}
}

// tail returns the last lines of a log for an error message.
func tail(b []byte) []byte {
	const max = 4000
	b = bytes.TrimSpace(b)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return b
}
