package reliability

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365sim"
)

// engineProc runs `responder serve` as a child process against the test's NATS
// server and emulator, and kills it with SIGKILL on demand.
type engineProc struct {
	t       *testing.T
	bin     string
	args    []string
	env     []string
	logDir  string
	dataDir string
	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
	starts  int
}

func newEngineProc(t *testing.T, natsURL string, sim *m365sim.Tenant) *engineProc {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := sim.WriteCAFile(ca); err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pb, 0o700); err != nil {
		t.Fatal(err)
	}
	info := sim.Info()
	p := &engineProc{t: t, bin: responderBinary(t), logDir: t.TempDir(), dataDir: filepath.Join(dir, "data"),
		args: []string{"serve", "--nats-url", natsURL, "--data-dir", filepath.Join(dir, "data"), "--playbooks", pb,
			"--login-url", info.LoginURL, "--graph-url", info.GraphURL, "--manage-url", info.ManageURL,
			// No operations HTTP (a fixed port); no blast-radius limit: the run
			// is 1,000 disables, which would otherwise wait for approval.
			"--ops-addr", "", "--blast-limit", "disable_user=0"},
		// Credentials by environment, not argv (argv is visible to every local user).
		env: append(os.Environ(), "SSL_CERT_FILE="+ca, "RESPONDER_TENANT_ID="+info.TenantID,
			"RESPONDER_CLIENT_ID="+info.ClientID, "RESPONDER_CLIENT_SECRET="+info.ClientSecret,
			"RESPONDER_LOG_LEVEL=info"),
	}
	t.Cleanup(p.stop)
	return p
}

func (p *engineProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	logf, err := os.Create(filepath.Join(p.logDir, fmt.Sprintf("engine-%02d.log", p.starts)))
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatal(err)
	}
	p.cmd, p.waitErr = cmd, make(chan error, 1)
	go func(done chan<- error) {
		done <- cmd.Wait()
		logf.Close()
	}(p.waitErr)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *engineProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.waitErr
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the last process gracefully (SIGTERM, then SIGKILL after 20 s).
func (p *engineProc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.waitErr
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// exitedEarly reports a process that died by itself (not killed by the test).
func (p *engineProc) exitedEarly() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	select {
	case err := <-p.waitErr:
		p.cmd = nil
		b, _ := os.ReadFile(filepath.Join(p.logDir, fmt.Sprintf("engine-%02d.log", p.starts)))
		return fmt.Errorf("engine process exited by itself (%v): %s", err, tail(b, 2000))
	default:
		return nil
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestCrashSafety: 2,000 mixed analyst requests while the engine process is
// killed with SIGKILL at random moments (at least 10 times) and restarted. At
// the end every request has exactly one final audit outcome, no non-idempotent
// effect happened twice (wire log), the audit chain verifies and nothing is
// left in the work queue.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash safety run: about 2.5 minutes (the redelivery of messages held by a killed process waits for the 2 min AckWait)")
	}
	const (
		requests = 2000
		kills    = 10
		rate     = 150 // requests published per second
	)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed>>1))

	srv := startNATS(t)
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	tenant := sim.Info().TenantID
	c := connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 175*time.Second)
	defer cancel()
	if err := bus.Ensure(ctx, c.js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	w := newWorkload(sim, requests, rng)
	eng := newEngineProc(t, srv.ClientURL(), sim)
	// The engine signs nothing from analysts: the test is the analyst, with the
	// local administrator key the engine trusts in its data directory.
	kp, _, err := analyst.EnsureLocalAdmin(eng.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	w.key = kp
	eng.start()

	pubDone := make(chan error, 1)
	go func() { pubDone <- w.publish(ctx, c.js, tenant, rate, rng) }()

	// Kill at random moments while the requests arrive, restart at once.
	killed := 0
	published := false
	for killed < kills || !published {
		timer := time.NewTimer(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		select {
		case err := <-pubDone:
			timer.Stop()
			if err != nil {
				t.Fatalf("publishing: %v", err)
			}
			published = true
			continue
		case <-timer.C:
		case <-ctx.Done():
			t.Fatalf("gave up after %d kills: %v", killed, ctx.Err())
		}
		if err := eng.exitedEarly(); err != nil {
			t.Fatal(err)
		}
		eng.kill()
		killed++
		eng.start()
	}
	t.Logf("published %d requests; engine killed %d times", len(w.reqs), killed)

	if missing, err := waitAllFinal(ctx, c.js, w); err != nil {
		b, _ := os.ReadFile(filepath.Join(eng.logDir, fmt.Sprintf("engine-%02d.log", eng.starts)))
		t.Fatalf("%v (%d missing)\nlast engine log:\n%s", err, missing, tail(b, 4000))
	}
	eng.stop()

	recs := allRecords(t, c.js)
	final := checkExactlyOnce(t, recs, w)
	t.Logf("outcomes: %s", outcomeCounts(final))
	checkEffects(t, sim, w, final)
	checkChain(t, c.js)
	checkDrained(t, c.js, tenant)
	if t.Failed() {
		var logs bytes.Buffer
		for i := 1; i <= eng.starts; i++ {
			b, _ := os.ReadFile(filepath.Join(eng.logDir, fmt.Sprintf("engine-%02d.log", i)))
			fmt.Fprintf(&logs, "--- engine %d ---\n%s\n", i, tail(b, 1500))
		}
		t.Logf("engine logs (tails):\n%s", logs.String())
	}
}
