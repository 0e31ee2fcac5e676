package feeds

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/m365sim"
)

// countingPublisher is the real JetStream publisher, counting what reaches it.
type countingPublisher struct {
	jetstream.Publisher
	n atomic.Int64
}

func (c *countingPublisher) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	c.n.Add(1)
	return c.Publisher.Publish(ctx, subj, data, opts...)
}

func (c *countingPublisher) PublishAsync(subj string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	c.n.Add(1)
	return c.Publisher.PublishAsync(subj, data, opts...)
}

// Identity Protection publishes real-time detections up to 10 minutes late
// and offline ones up to 48 hours late, with their original timestamps; the
// risky user's state lags with them. Real-time detections 10 minutes late and
// an offline one 30 hours late are each stored once (EVENTS holds each once),
// the periodic re-scan finds the offline one, and a restarted poller's
// re-scan publishes nothing, not even to the stream (its duplicate window is
// 2 h; the pollers remember ids across restarts).
func TestRiskFeedsReadLateDetectionsOnce(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	cfg := e.graphConfig(t)
	pub := &countingPublisher{Publisher: e.bus.JS}
	cfg.JS = pub
	cfg.Interval = time.Minute
	ctx := context.Background()
	t0 := e.clock.Now()
	late := m365sim.Lateness{Realtime: 10 * time.Minute, Offline: 30 * time.Hour}
	var want []string
	for _, u := range []string{"alice@contoso.com", "bob@contoso.com"} {
		d := e.tn.InjectRiskDetection(late.Detection(m365sim.RiskDetection{UserPrincipalName: u, RiskLevel: "high", DetectionTimingType: "realtime"}))
		want = append(want, d.ID)
	}
	off := e.tn.InjectRiskDetection(late.Detection(m365sim.RiskDetection{UserPrincipalName: "carol@contoso.com", RiskLevel: "high",
		RiskEventType: "leakedCredentials", DetectionTimingType: "offline", Activity: "user"}))
	want = append(want, off.ID)
	if !off.LastUpdatedDateTime.Equal(off.DetectedDateTime) || off.LastUpdatedDateTime.Sub(t0) > time.Second {
		t.Fatalf("offline detection updated %v, want its original %v", off.LastUpdatedDateTime, off.DetectedDateTime)
	}
	dets, users := NewRiskDetectionPoller(cfg), NewRiskyUserPoller(cfg)
	poll := func() (int, int) {
		t.Helper()
		nd, err := dets.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nu, err := users.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return nd, nu
	}
	// Poll every minute for 20 minutes: the real-time detections show at 10.
	var gotRT, gotUsers int
	for range 20 {
		e.clock.Advance(time.Minute)
		nd, nu := poll()
		gotRT += nd
		gotUsers += nu
	}
	if gotRT != 2 || gotUsers != 2 {
		t.Fatalf("after 20 minutes: %d detections, %d risky users; want 2 and 2", gotRT, gotUsers)
	}
	// Then every 10 minutes up to 31 hours: the offline one shows at 30 h,
	// far behind the cursor; the hourly re-scan reads it.
	var gotOff, gotOffUsers int
	for e.clock.Now().Before(t0.Add(31 * time.Hour)) {
		e.clock.Advance(10 * time.Minute)
		nd, nu := poll()
		gotOff += nd
		gotOffUsers += nu
	}
	if gotOff != 1 || gotOffUsers != 1 {
		t.Fatalf("by 31 h: %d detections, %d risky users; want the offline one and carol's state", gotOff, gotOffUsers)
	}
	// A restarted process (fresh pollers) re-scans the 48 h: nothing new, and
	// nothing even offered to the stream.
	before := pub.n.Load()
	e.clock.Advance(time.Hour)
	dets, users = NewRiskDetectionPoller(cfg), NewRiskyUserPoller(cfg)
	if nd, nu := poll(); nd != 0 || nu != 0 {
		t.Fatalf("restarted: %d detections, %d risky users", nd, nu)
	}
	if n := pub.n.Load() - before; n != 0 {
		t.Fatalf("restarted pollers offered %d events to the stream", n)
	}
	got := eventIDs(t, e.bus.JS)
	if len(got) != 6 {
		t.Fatalf("EVENTS holds %d events, want 3 detections and 3 risky-user states: %v", len(got), got)
	}
	for _, id := range want {
		n := 0
		for k, c := range got {
			if strings.HasPrefix(k, id+":") {
				n += c
			}
		}
		if n != 1 {
			t.Errorf("detection %s stored %d times", id, n)
		}
	}
	// Re-scans are bounded: about one listing an hour (each reads the 48 h
	// horizon), besides one short poll a minute.
	rescans := 0
	for _, w := range e.tn.WireLog() {
		if w.Path != "/v1.0/identityProtection/riskDetections" {
			continue
		}
		q, err := url.ParseQuery(w.Query)
		if err != nil {
			t.Fatal(err)
		}
		var from, to string
		if _, err := fmt.Sscanf(q.Get("$filter"), "lastUpdatedDateTime ge %s and lastUpdatedDateTime le %s", &from, &to); err != nil {
			t.Fatalf("filter %q: %v", q.Get("$filter"), err)
		}
		f, _ := time.Parse(time.RFC3339, from)
		u, _ := time.Parse(time.RFC3339, to)
		if u.Sub(f) > 24*time.Hour { // the first poll's 6 h windows are not re-scans
			rescans++
		}
	}
	if rescans < 31 || rescans > 34 {
		t.Errorf("%d re-scans over 31 h and a restart", rescans)
	}
}
