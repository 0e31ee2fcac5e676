package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

const (
	childDirEnv  = "RESPONDER_BENCH_NATS_CHILD" // the NATS store of the child
	childSizeEnv = "RESPONDER_BENCH_INGEST"     // "records,perBlob" of its tenant
	childHello   = "responder-bench-child "
)

// childHelloMsg is what the child tells its parent, on one line of its
// standard output (a pipe only the parent reads).
type childHelloMsg struct {
	NATSURL string `json:"nats_url"`
	// Seed is the run's engine key, made by the child for its server (the
	// server lets no one in without a key); it crosses only this pipe.
	Seed  []byte       `json:"seed"`
	Sim   m365sim.Info `json:"sim"`
	CAPEM []byte       `json:"ca_pem"`
}

// ServeChild makes this process the far side of an ingest run when its
// environment says so (Run starts its own executable with it): the NATS
// server and the emulated tenant whose Management Activity API the poller
// reads, so that the parent's memory and CPU are the poller's alone.
// Otherwise it returns false at once. Call it first in main (and in the
// TestMain of a test binary that runs Run); when served is true, exit with
// code. The child stops when its standard input closes, that is when the
// benchmark ends or dies.
func ServeChild() (served bool, code int) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		return false, 0
	}
	fail := func(err error) (bool, int) {
		fmt.Fprintln(os.Stderr, "bench ingest child:", err)
		return true, 1
	}
	records, perBlob, err := parseSize(os.Getenv(childSizeEnv))
	if err != nil {
		return fail(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	key, err := nkeys.CreateUser()
	if err != nil {
		return fail(err)
	}
	seed, err := key.Seed()
	if err != nil {
		return fail(err)
	}
	b, err := bus.Open(context.Background(), bus.Config{StoreDir: dir, Port: -1, Logger: quiet, Name: "bench-ingest-child", Auth: bus.ClientAuth{Key: key}})
	if err != nil {
		return fail(err)
	}
	defer b.Close()
	sim, err := newTenant(records, perBlob, quiet)
	if err != nil {
		return fail(err)
	}
	defer sim.Close()
	info := sim.Info()
	line, err := json.Marshal(childHelloMsg{NATSURL: b.ClientURL(), Seed: seed, Sim: info, CAPEM: info.CAPEM})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stdout, "%s%s\n", childHello, line)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return true, 0
}

func parseSize(s string) (records, perBlob int, err error) {
	a, c, ok := strings.Cut(s, ",")
	if ok {
		records, err = strconv.Atoi(a)
		if err == nil {
			perBlob, err = strconv.Atoi(c)
		}
	}
	if !ok || err != nil || records <= 0 || perBlob <= 0 {
		return 0, 0, fmt.Errorf("%s=%q: want records,perBlob", childSizeEnv, s)
	}
	return records, perBlob, nil
}

// child is the NATS server and emulated tenant in a child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	hello childHelloMsg
	done  chan struct{} // closed when the stdout reader is finished
}

// startChild starts this executable as the child of a run of records in
// blobs of perBlob, with its NATS store in dir. Its arguments make a test
// binary that does not serve it run nothing, and the responder binary
// without the hook refuse them.
func startChild(ctx context.Context, dir string, records, perBlob int) (*child, error) {
	if os.Getenv(childDirEnv) != "" {
		return nil, errors.New("already a benchmark child")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, fmt.Sprintf("%s=%d,%d", childSizeEnv, records, perBlob))
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 4096}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	hello := make(chan string, 1)
	go func() {
		defer close(c.done)
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		hello <- strings.TrimRight(line, "\r\n")
		_, _ = io.Copy(io.Discard, r)
	}()
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case line := <-hello:
		if msg, ok := strings.CutPrefix(line, childHello); ok && json.Unmarshal([]byte(msg), &c.hello) == nil {
			return c, nil
		}
		c.stop()
		if strings.HasPrefix(line, childHello) {
			return nil, errors.New("ingest: the child's hello does not parse") // never quoted: it holds a key
		}
		if len(line) > 80 {
			line = line[:80]
		}
		return nil, fmt.Errorf("%s does not serve a benchmark child (it said %q, %s)", filepath.Base(exe), line, strings.TrimSpace(stderr.String()))
	case <-t.C:
		c.stop()
		return nil, errors.New("the benchmark child did not start within 60 s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// credentials reach the child's tenant over TLS, trusting its CA.
func (c *child) credentials() (m365.Credentials, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.hello.CAPEM) {
		return m365.Credentials{}, errors.New("ingest: the child's CA certificate does not parse")
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, MaxIdleConns: 100, IdleConnTimeout: 30 * time.Second,
	}
	return simCredentials(c.hello.Sim, &http.Client{Transport: tr, Timeout: 100 * time.Second}), nil
}

func simCredentials(info m365sim.Info, hc *http.Client) m365.Credentials {
	return m365.Credentials{
		TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL,
		HTTPClient: hc,
	}
}

// auth is the run's engine key, which the child's server trusts.
func (c *child) auth() (bus.ClientAuth, error) {
	kp, err := nkeys.FromSeed(c.hello.Seed)
	if err != nil {
		return bus.ClientAuth{}, fmt.Errorf("ingest: the child's key: %w", err)
	}
	return bus.ClientAuth{Key: kp}, nil
}

// cpu is the child's CPU time so far (0 without a child).
func (c *child) cpu() time.Duration {
	if c == nil {
		return 0
	}
	return processCPU(strconv.Itoa(c.cmd.Process.Pid))
}

// peakRSSMB is the child's VmHWM.
func (c *child) peakRSSMB() float64 { return vmHWM(strconv.Itoa(c.cmd.Process.Pid)) }

// stop closes the child's input and waits for it to exit (killing it after
// 20 s).
func (c *child) stop() {
	_ = c.stdin.Close()
	exited := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(exited)
	}()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-exited
	}
	<-c.done
}
