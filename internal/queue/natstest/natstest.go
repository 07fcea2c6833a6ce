// Package natstest runs real nats-server processes for tests: a cluster
// of JetStream nodes on loopback, each a separate process that a test
// can kill. The binary is built once per machine from the nats-server
// module Sluice already depends on (the same version as the embedded
// server), so the tests need nothing but Go.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary returns the path of a nats-server built from the module version
// in go.mod, building it on first use into the machine's temp dir.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		version := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "github.com/nats-io/nats-server/v2" {
					version = d.Version
				}
			}
		}
		binary = filepath.Join(os.TempDir(), "sluice-tools", "nats-server-"+version)
		if _, err := os.Stat(binary); err == nil {
			return
		}
		tmp := binary + ".tmp" + strconv.Itoa(os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build nats-server (needs Go and the module proxy): %v\n%s", err, out)
			return
		}
		buildErr = os.Rename(tmp, binary)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Node is one nats-server process of a cluster.
type Node struct {
	Name string
	URL  string // nats://127.0.0.1:port
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	dead bool
}

// Kill stops the node at once (SIGKILL), as a crash would.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead || n.cmd == nil {
		return
	}
	n.dead = true
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Cluster is a set of clustered JetStream nodes.
type Cluster struct {
	Nodes []*Node
	dir   string
}

// URLs is the client URL list of every node, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL)
	}
	return strings.Join(urls, ",")
}

// StartCluster starts n clustered JetStream nodes (one standalone node
// for n = 1) on loopback, each with its own store in a temp dir, and
// waits until every node accepts connections (the cluster may still be
// electing its JetStream leader). The nodes are killed when the test
// ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := NewCluster(t, n)
	c.Start(t)
	return c
}

// NewCluster chooses the ports and store dirs of n nodes without starting
// them, so that a test can point a client at the cluster's URLs before it
// runs. Start starts them.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(p))
	}
	c := &Cluster{dir: dir}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		node := &Node{Name: name, URL: "nats://127.0.0.1:" + strconv.Itoa(clientPorts[i]), done: make(chan struct{})}
		node.args = []string{"--name", name, "--addr", "127.0.0.1", "--port", strconv.Itoa(clientPorts[i]),
			"--jetstream", "--store_dir", filepath.Join(dir, name)}
		if n > 1 { // a single node runs standalone
			node.args = append(node.args, "--cluster_name", "sluice-test", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		}
		c.Nodes = append(c.Nodes, node)
	}
	return c
}

// Start starts the cluster's nodes and waits until each accepts
// connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	bin := Binary(t)
	for _, node := range c.Nodes {
		node.cmd = exec.Command(bin, node.args...)
		log, err := os.Create(filepath.Join(c.dir, node.Name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		node.cmd.Stdout, node.cmd.Stderr = log, log
		if err := node.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", node.Name, err)
		}
		go func() { _ = node.cmd.Wait(); log.Close(); close(node.done) }()
		t.Cleanup(node.Kill)
	}
	for _, node := range c.Nodes {
		waitListening(t, node, filepath.Join(c.dir, node.Name+".log"))
	}
}

func waitListening(t testing.TB, n *Node, logFile string) {
	t.Helper()
	addr := strings.TrimPrefix(n.URL, "nats://")
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-n.done:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("nats-server %s exited:\n%s", n.Name, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not listening after 30s", n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePorts returns n loopback ports free at the time of the call.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
