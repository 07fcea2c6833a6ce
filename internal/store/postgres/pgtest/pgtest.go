// Package pgtest runs a throwaway PostgreSQL server for tests, so that
// code written for PostgreSQL is tested against the real thing.
//
// A test package that uses it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The first Start starts one server for the whole test binary: initdb
// makes a cluster in a new temporary directory, and postgres serves it on
// a Unix socket in that directory only (no TCP port, so parallel test
// binaries cannot collide), with durability turned off for speed. Every
// Start then creates a database of its own (test_1, test_2, ...) and
// returns its DSN, so parallel tests never share state; the database is
// dropped when the test ends. Main stops the server and removes the
// directory once the tests have run. Should the test binary die first,
// the kernel sends the server SIGINT (Linux's parent-death signal) and it
// shuts down, leaving only its directory behind.
//
// PostgreSQL refuses to run as root. When the tests do, the server runs as
// the postgres system user that Debian's package creates, and owns its
// directory; the tests, as root, can still reach its socket.
//
// The server binaries are looked up in $SLUICE_PG_BIN, then in the newest
// /usr/lib/postgresql/*/bin (Debian), then on $PATH. Without them Start
// fails, saying how to install them: bash scripts/pg-deps.sh.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// port only names the socket file (.s.PGSQL.5432): nothing listens on
	// TCP.
	port = 5432
	// superuser is the role initdb creates and the DSNs connect as.
	superuser = "postgres"
	// startTimeout bounds how long the server may take to accept
	// connections.
	startTimeout = 60 * time.Second
	// socketPathMax is the room a Unix socket path has (sun_path, less
	// its terminating NUL).
	socketPathMax = 107
)

var (
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server
	startErr   error
	databases  atomic.Int64
)

// Main runs the tests and then stops the server, if one was started,
// and removes its directory. Call it from TestMain; it does not return.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Start returns the DSN (key=value form) of a new, empty database on the
// test binary's server, starting the server on first use. The database
// is dropped when t ends.
func Start(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: Start without pgtest.Main: call pgtest.Main(m) from the package's TestMain, which stops the server after the tests")
	}
	once.Do(func() { srv, startErr = start() })
	if startErr != nil {
		t.Fatalf("pgtest: %v", startErr)
	}
	name := fmt.Sprintf("test_%d", databases.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends connections the test left open.
		if _, err := srv.admin.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return srv.dsn(name)
}

// server is the running PostgreSQL.
type server struct {
	dir    string // the cluster (data/), its socket and its log
	cmd    *exec.Cmd
	exited chan struct{} // closed when the server process has exited
	err    error         // how it exited, once exited is closed
	admin  *pgxpool.Pool // to the postgres database, for CREATE DATABASE
}

func (s *server) dsn(database string) string {
	return fmt.Sprintf("host='%s' port=%d user=%s dbname=%s sslmode=disable", s.dir, port, superuser, database)
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// start makes a cluster in a new temporary directory and starts postgres
// on it.
func start() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir, exited: make(chan struct{})}
	if err := s.run(bin, cred); err != nil {
		if s.cmd != nil {
			s.stop()
		} else {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return s, nil
}

func (s *server) run(bin string, cred *syscall.Credential) error {
	if cred != nil {
		if err := os.Chown(s.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(s.dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"--pgdata", data, "--username", superuser, "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync")
	initdb.Dir = s.dir
	initdb.SysProcAttr = procAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}

	log, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	defer log.Close() // the server has its own copy
	s.cmd = exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-k", s.dir, // the socket's directory
		"-h", "", // no TCP
		"-p", strconv.Itoa(port),
		// A test server loses nothing it needs in a crash: trade
		// durability for speed.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
		// Parallel tests each open a pool of several connections.
		"-c", "max_connections=400",
	)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = procAttr(cred)
	// The server's parent-death signal fires when the OS thread that
	// started it exits, and a thread that another goroutine locked and
	// left (s3test does) may exit at any time: start the server from a
	// thread this goroutine holds for as long as the server runs.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		s.cmd = nil
		return fmt.Errorf("start postgres: %w", err)
	}

	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pool, err := pgxpool.New(ctx, s.dsn("postgres")+" pool_max_conns=4")
		if err == nil {
			err = pool.Ping(ctx)
			if err == nil {
				cancel()
				s.admin = pool
				return nil
			}
			pool.Close()
		}
		cancel()
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited at start: %v\n%s", s.err, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not accepting connections after %v: %v\n%s", startTimeout, err, s.logTail())
		}
	}
}

// stop shuts the server down (fast shutdown: clients are disconnected)
// and removes its directory.
func (s *server) stop() error {
	if s.admin != nil {
		s.admin.Close()
	}
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
			err = fmt.Errorf("postgres did not shut down in 30s; killed it\n%s", s.logTail())
		}
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// binDir finds the directory of initdb and postgres.
func binDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("SLUICE_PG_BIN"); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("SLUICE_PG_BIN=%s holds no initdb and postgres", dir)
		}
		return dir, nil
	}
	// Debian installs each major version side by side; take the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed (no initdb and postgres in /usr/lib/postgresql/*/bin or on $PATH): " +
		"run `bash scripts/pg-deps.sh` as root (it installs Debian's postgresql package), " +
		"or point SLUICE_PG_BIN at the directory holding initdb and postgres")
}

// version is the major version in a path /usr/lib/postgresql/N/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// credential is who the server runs as: nil for the current user, or the
// postgres user when the tests run as root.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the tests run as root, which PostgreSQL refuses, and there is no postgres user to run it as (%v): "+
			"bash scripts/pg-deps.sh installs Debian's postgresql package, which creates it", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	// No supplementary groups: none of root's.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tempDir makes the server's directory, in a temporary directory whose
// path leaves room for the socket's name.
func tempDir() (string, error) {
	const socket = "/.s.PGSQL.5432"
	const pattern = "sluice-pg-*"
	parent := os.TempDir()
	if len(parent)+len(pattern)+len(socket)+8 > socketPathMax {
		parent = "/tmp"
	}
	return os.MkdirTemp(parent, pattern)
}
