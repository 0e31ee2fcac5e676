package engine

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/notify"
	"github.com/responder-sec/responder/internal/ops"
)

// recorder appends to the audit trail and counts final outcomes, with the
// latency from the event (as first seen by this process's matcher) to the action.
type recorder struct {
	inner   actions.Recorder
	metrics *ops.Metrics
	seen    *eventTimes
	// notifier, once the engine runs one, is told of requests held for
	// approval and failed (notify.go).
	notifier atomic.Pointer[notify.Notifier]
}

func (r *recorder) Append(ctx context.Context, rec audit.Record) (audit.Record, error) {
	out, err := r.inner.Append(ctx, rec)
	if n := r.notifier.Load(); n != nil && err == nil {
		if ev, ok := notify.FromRecord(out); ok {
			n.Enqueue(ev)
		}
	}
	if err == nil && rec.Action != "" && rec.Outcome.Final() {
		var since time.Duration
		if t, ok := r.seen.get(rec.EventID); ok {
			since = time.Since(t)
		}
		r.metrics.Action(rec.Action, string(rec.Outcome), since)
	}
	return out, err
}

// eventTimes remembers when the matcher saw recent events (bounded, FIFO).
type eventTimes struct {
	mu    sync.Mutex
	max   int
	order []string
	at    map[string]time.Time
}

func newEventTimes(max int) *eventTimes {
	return &eventTimes{max: max, at: make(map[string]time.Time, max)}
}

func (e *eventTimes) put(id string, t time.Time) {
	if e == nil || id == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.at[id]; ok {
		return
	}
	if len(e.order) >= e.max {
		delete(e.at, e.order[0])
		e.order = e.order[1:]
	}
	e.order = append(e.order, id)
	e.at[id] = t
}

func (e *eventTimes) get(id string) (time.Time, bool) {
	if e == nil || id == "" {
		return time.Time{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.at[id]
	return t, ok
}

// instrument counts Graph calls and throttles by service.
func instrument(c *http.Client, m *ops.Metrics) *http.Client {
	if c == nil {
		c = &http.Client{Timeout: 100 * time.Second}
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc := *c
	cc.Transport = &countingTransport{base: base, m: m}
	return &cc
}

type countingTransport struct {
	base http.RoundTripper
	m    *ops.Metrics
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	svc := service(r.URL.Path)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.m.GraphCall(svc, status)
	if status == http.StatusTooManyRequests {
		t.m.GraphThrottle(svc)
	}
	return resp, err
}

// service names the Microsoft budget a path falls under.
func service(p string) string {
	p = strings.ToLower(p)
	switch {
	case strings.Contains(p, "/oauth2/"):
		return "login"
	case strings.Contains(p, "/activity/feed/"):
		return "management_activity"
	case strings.Contains(p, "/identityprotection/"), strings.Contains(p, "/conditionalaccess/"):
		return "identity_protection_ca"
	case strings.Contains(p, "/auditlogs/"):
		return "reports"
	case strings.Contains(p, "/messages"), strings.Contains(p, "/mailfolders"), strings.Contains(p, "/messagerules"):
		return "outlook"
	case strings.Contains(p, "/$batch"):
		return "batch"
	}
	return "entra"
}
