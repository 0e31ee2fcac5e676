package feeds

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// pollsSeen closes done once every feed named in want has completed that
// many polls (Lag is observed at the end of each successful poll).
type pollsSeen struct {
	nopObserver
	mu   sync.Mutex
	n    map[string]int
	want map[string]int
	done chan struct{}
	once sync.Once
}

func (o *pollsSeen) Lag(feed, _ string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[feed]++
	for f, w := range o.want {
		if o.n[f] < w {
			return
		}
	}
	o.once.Do(func() { close(o.done) })
}

func requestsTo(e *env, path string) int {
	n := 0
	for _, w := range e.tn.WireLog() {
		if strings.HasSuffix(w.Path, path) {
			n++
		}
	}
	return n
}

// On a tenant with Entra ID P1 but not P2, riskyUsers answers 403
// Authentication_RequestFromNonPremiumTenantOrB2CTenant (the emulator, as
// Microsoft documents: "Using the riskyUsers API requires a Microsoft Entra
// ID P2 license"). The risky-user feed parks: it asks once and not again
// within LicenceRecheck while the sign-in and risk-detection feeds poll on;
// its status says parked and why; the parking is audited once, also across a
// restart; once the licence is bought the next check resumes it, audited.
func TestRiskyUsersParkWithoutP2(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	e.tn.SetLicence(m365sim.LicenceP1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	trail := &gapRecords{}
	obs := &pollsSeen{n: map[string]int{}, want: map[string]int{FeedSignIns: 3, FeedRiskDetections: 3}, done: make(chan struct{})}
	cfg := e.graphConfig(t)
	cfg.Interval, cfg.LicenceRecheck = time.Millisecond, time.Hour
	cfg.Observer, cfg.Audit = obs, trail
	var wg sync.WaitGroup
	var runErr atomic.Value
	for _, ctor := range []func(GraphFeedConfig) *GraphPoller{NewRiskyUserPoller, NewSignInPoller, NewRiskDetectionPoller} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ctor(cfg).Run(ctx); err != nil {
				runErr.Store(err)
			}
		}()
	}
	select {
	case <-obs.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the other feeds stalled: %v", obs.n)
	}
	cancel()
	wg.Wait()
	if err := runErr.Load(); err != nil {
		t.Fatal(err)
	}
	if n := requestsTo(e, "/identityProtection/riskyUsers"); n != 1 {
		t.Fatalf("riskyUsers asked %d times within the recheck interval, want 1", n)
	}
	lines, err := Status(context.Background(), e.kv, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		switch l.Feed {
		case FeedRiskyUsers:
			if !strings.Contains(l.Parked, "tenant has no Entra ID P2 licence: Identity Protection feeds parked") || l.ParkedSince.IsZero() {
				t.Errorf("risky_users status %+v", l)
			}
		default:
			if l.Parked != "" || l.LastSuccess.IsZero() {
				t.Errorf("%s status %+v", l.Feed, l)
			}
		}
	}
	var out strings.Builder
	if err := WriteStatus(&out, lines, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "PARKED since") || !strings.Contains(out.String(), "no Entra ID P2 licence") {
		t.Errorf("feeds status:\n%s", out.String())
	}
	if len(trail.recs) != 1 || trail.recs[0].Outcome != audit.Failed || trail.recs[0].Target["feed"] != FeedRiskyUsers ||
		!strings.Contains(trail.recs[0].Detail, "parked") {
		t.Fatalf("audit trail: %+v", trail.recs)
	}

	// A restarted process asks again, finds the tenant still unlicensed and
	// does not audit the same parking twice.
	cfg.Observer = nopObserver{}
	if _, err := NewRiskyUserPoller(cfg).Poll(context.Background()); err == nil {
		t.Fatal("poll without the licence succeeded")
	}
	if len(trail.recs) != 1 {
		t.Fatalf("the parking was audited again after a restart: %+v", trail.recs)
	}

	// The licence is bought: the next check resumes the feed.
	e.tn.SetLicence(m365sim.LicenceP2)
	e.tn.InjectRiskDetection(m365sim.RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "high"})
	e.clock.Advance(time.Second)
	if n, err := NewRiskyUserPoller(cfg).Poll(context.Background()); err != nil || n != 1 {
		t.Fatalf("after the licence: %d events, %v", n, err)
	}
	lines, _ = Status(context.Background(), e.kv, e.clock.Now)
	for _, l := range lines {
		if l.Feed == FeedRiskyUsers && (l.Parked != "" || l.LastError != "") {
			t.Errorf("still parked: %+v", l)
		}
	}
	if len(trail.recs) != 2 || trail.recs[1].Outcome != audit.Succeeded || !strings.Contains(trail.recs[1].Detail, "resumed") {
		t.Fatalf("audit trail after the licence: %+v", trail.recs)
	}
}

// A tenant without any premium licence parks both Identity Protection feeds
// (and the sign-in log); nothing is published.
func TestIdentityProtectionParkedOnAFreeTenant(t *testing.T) {
	e := newEnv(t, m365sim.Options{Licence: m365sim.LicenceFree})
	e.tn.InjectRiskDetection(m365sim.RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "high"})
	e.clock.Advance(time.Second)
	cfg := e.graphConfig(t)
	for _, p := range []*GraphPoller{NewRiskDetectionPoller(cfg), NewRiskyUserPoller(cfg)} {
		if n, err := p.Poll(context.Background()); err == nil || n != 0 {
			t.Fatalf("%s: %d, %v", p.feed.name, n, err)
		}
	}
	lines, err := Status(context.Background(), e.kv, e.clock.Now)
	if err != nil || len(lines) != 2 {
		t.Fatalf("status %+v, %v", lines, err)
	}
	for _, l := range lines {
		if !strings.Contains(l.Parked, "no Entra ID P2 licence: Identity Protection feeds parked") {
			t.Errorf("%s: %+v", l.Feed, l)
		}
	}
	if got := eventIDs(t, e.bus.JS); len(got) != 0 {
		t.Fatalf("published without a licence: %v", got)
	}
}
