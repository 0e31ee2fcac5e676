package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, path, nil))
	return rr.Code, rr.Body.String()
}

func TestMetricsExposesCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Event("audit", "New-InboxRule")
	m.Match("forwarding-rule")
	m.Action("disable_user", "succeeded", 3*time.Second)
	m.Action("disable_user", "failed", 0)
	m.GraphCall("graph", 204)
	m.GraphCall("graph", 429)
	m.GraphThrottle("graph")
	m.FeedLag("audit", "Audit.Exchange", 90*time.Second)
	var none *Metrics
	none.Action("x", "y", time.Second) // nil-safe

	s, err := NewServer(Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, s.Handler(), "/metrics")
	if code != 200 {
		t.Fatal(code)
	}
	for _, want := range []string{
		`responder_events_total{kind="New-InboxRule",source="audit"} 1`,
		`responder_playbook_matches_total{playbook="forwarding-rule"} 1`,
		`responder_actions_total{action="disable_user",outcome="succeeded"} 1`,
		`responder_actions_total{action="disable_user",outcome="failed"} 1`,
		`responder_event_to_action_seconds_count 1`,
		`responder_event_to_action_seconds_sum 3`,
		`responder_graph_calls_total{service="graph",status="429"} 1`,
		`responder_graph_throttles_total{service="graph"} 1`,
		`responder_feed_lag_seconds{content_type="Audit.Exchange",feed="audit"} 90`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "go_goroutines") {
		t.Error("the global default registry leaked in")
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice should fail")
	}
}

func TestHealthAndReady(t *testing.T) {
	ready := map[string]error{"nats": nil, "graph_token": errors.New("AADSTS7000215: invalid client")}
	s, _ := NewServer(Config{Registry: prometheus.NewRegistry(), Ready: func(context.Context) map[string]error { return ready }})
	if code, body := get(t, s.Handler(), "/healthz"); code != 200 || body != "ok\n" {
		t.Fatal(code, body)
	}
	code, body := get(t, s.Handler(), "/readyz")
	if code != 503 || !strings.Contains(body, `"graph_token":"AADSTS7000215`) || !strings.Contains(body, `"nats":"ok"`) {
		t.Fatal(code, body)
	}
	ready["graph_token"] = nil
	if code, _ := get(t, s.Handler(), "/readyz"); code != 200 {
		t.Fatal(code)
	}
}

func TestAPIAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w := audit.NewWriter(b.JS, audit.WriterOptions{})
	base := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	for i, o := range []audit.Outcome{audit.Succeeded, audit.Rejected, audit.Succeeded} {
		if _, err := w.Append(ctx, audit.Record{TenantID: "t1", Time: base.Add(time.Duration(i) * time.Minute), Action: "disable_user",
			Outcome: o, Actor: audit.Actor{Kind: "analyst", Name: "alice"}, Target: map[string]string{"user": "carol@contoso.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewServer(Config{Registry: prometheus.NewRegistry(), Audit: b.JS, Tenant: "t1", Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	// Through a real listener, as a client sees it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, ln) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	resp, err := getWithToken("http://" + ln.Addr().String() + "/api/audit?outcome=succeeded&actor=ALICE&since=2025-06-01T09:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatal(resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	var n int
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Outcome != audit.Succeeded || r.Hash == "" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	r2, err := getWithToken("http://" + ln.Addr().String() + "/api/audit?bogus=1")
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 400 || !strings.Contains(string(msg), "bogus") {
		t.Fatal(r2.Status, string(msg))
	}
}

func TestDefaultAddrIsLoopback(t *testing.T) {
	s, _ := NewServer(Config{Registry: prometheus.NewRegistry()})
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatal(s.cfg.Addr)
	}
}
