// Package bustest starts what the bus tests need and the product never does:
// a JetStream cluster of nats-server instances in the test process. It is
// the one home of that set-up (the reliability and audit tests use it);
// nothing outside tests imports it.
package bustest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of nats-server instances in the test
// process, on loopback, each with its own store. The test stops members at
// will; the rest are shut down at cleanup.
type Cluster struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	srvs []*server.Server
	down map[string]bool
	logs []string // each server's log file
}

// Logs are the servers' log files (n1's first).
func (c *Cluster) Logs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

// Warnings returns the last n warning and error lines of every server's log,
// each prefixed with its file's server (for a failed test's report).
func (c *Cluster) Warnings(n int) string {
	c.mu.Lock()
	files := slices.Clone(c.logs)
	c.mu.Unlock()
	var b strings.Builder
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var lines []string
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, "[WRN]") || strings.Contains(l, "[ERR]") {
				lines = append(lines, l)
			}
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- n%d: %d warnings and errors shown\n%s\n", i+1, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Start starts n clustered JetStream servers named n1..nn, in the cluster name, and waits
// until they form one meta group with a leader and every member is current.
//
// JetStream clustering needs every server's routes configured at start (a
// server with none refuses to start JetStream), so the route ports are picked
// first: n listeners on 127.0.0.1:0 held together (so the ports differ) and
// closed just before the servers bind them. Another process could take one of
// them in between; then a server fails to listen, and the cluster is started
// again on other ports.
func Start(t testing.TB, ctx context.Context, n int, name string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: name, down: map[string]bool{}}
	t.Cleanup(c.shutdown)
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = c.tryStart(n); err == nil {
			break
		}
		t.Logf("NATS cluster attempt %d: %v", attempt, err)
		c.shutdown()
		c.mu.Lock()
		c.srvs, c.logs = nil, nil
		c.mu.Unlock()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.waitFormed(ctx, n); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Cluster) tryStart(n int) error {
	ports, err := freePorts(n)
	if err != nil {
		return err
	}
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	for i := range n {
		dir := c.t.TempDir()
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: dir, NoSigs: true, MaxPayload: 8 << 20,
			// Each server's own log, for the warnings a failed test prints.
			LogFile: filepath.Join(dir, "server.log"), Logtime: true,
			Cluster: server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: ports[i]},
			// Every server gets every route, its own included (a server ignores
			// a route to itself), so each expects n peers.
			Routes: routes,
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			return err
		}
		srv.ConfigureLogger()
		srv.Start()
		c.mu.Lock()
		c.logs = append(c.logs, opts.LogFile)
		c.mu.Unlock()
		c.mu.Lock()
		c.srvs = append(c.srvs, srv)
		c.mu.Unlock()
		if !srv.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("NATS server %s not ready (route port %d)", opts.ServerName, ports[i])
		}
	}
	return nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var (
		lns   []net.Listener
		ports []int
	)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFormed waits until one running server is the meta leader and sees want
// JetStream peers, and every running server's meta group is current.
func (c *Cluster) waitFormed(ctx context.Context, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var (
			leader  string
			peers   int
			current = true
		)
		for _, s := range c.Running() {
			if s.JetStreamIsLeader() {
				leader, peers = s.Name(), len(s.JetStreamClusterPeers())
			}
			if !s.JetStreamIsCurrent() {
				current = false
			}
		}
		if leader != "" && peers >= want && current {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NATS cluster not formed (meta leader %q, %d of %d peers, all current %v): %w", leader, peers, want, current, ctx.Err())
		case <-tick.C:
		}
	}
}

// Running lists the servers not stopped by the test.
func (c *Cluster) Running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.srvs {
		if !c.down[s.Name()] {
			out = append(out, s)
		}
	}
	return out
}

// ClientURLs is every member's client URL, comma-separated (the form
// nats.Connect and --nats-url take).
func (c *Cluster) ClientURLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, 0, len(c.srvs))
	for _, s := range c.srvs {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Stop shuts the named server down and waits for it to be gone.
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	c.mu.Lock()
	var srv *server.Server
	for _, s := range c.srvs {
		if s.Name() == name && !c.down[name] {
			srv = s
		}
	}
	if srv != nil {
		c.down[name] = true
	}
	c.mu.Unlock()
	if srv == nil {
		c.t.Fatalf("no running NATS server %q", name)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

func (c *Cluster) shutdown() {
	for _, s := range c.Running() {
		s.Shutdown()
	}
	for _, s := range c.Running() {
		s.WaitForShutdown()
	}
}
