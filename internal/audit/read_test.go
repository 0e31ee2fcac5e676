package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
)

func TestFilterMatch(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	r := Record{
		Time:      at,
		TenantID:  "contoso",
		RequestID: "req-1",
		Action:    "disable_user",
		Target:    map[string]string{"user": "Alice@Contoso.com", "ip": "203.0.113.7"},
		Actor:     Actor{Kind: "playbook", Name: "Forwarding-Rule"},
		Outcome:   Succeeded,
		Playbook:  "forwarding-rule",
	}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty filter", Filter{}, true},
		{"since equal is inclusive", Filter{Since: at}, true},
		{"since after", Filter{Since: at.Add(time.Nanosecond)}, false},
		{"until equal is exclusive", Filter{Until: at}, false},
		{"until after", Filter{Until: at.Add(time.Second)}, true},
		{"window", Filter{Since: at.Add(-time.Hour), Until: at.Add(time.Hour)}, true},
		{"since in another zone", Filter{Since: at.In(time.FixedZone("X", 7200))}, true},
		{"actor name, any case", Filter{Actor: "forwarding-rule"}, true},
		{"actor kind", Filter{Actor: "PLAYBOOK"}, true},
		{"actor kind:name", Filter{Actor: "playbook:forwarding-rule"}, true},
		{"actor kind:wrong name", Filter{Actor: "playbook:other"}, false},
		{"actor other", Filter{Actor: "analyst"}, false},
		{"action", Filter{Action: "disable_user"}, true},
		{"action is exact", Filter{Action: "Disable_User"}, false},
		{"action other", Filter{Action: "revoke_sessions"}, false},
		{"target user, any case", Filter{Target: "alice@contoso.com"}, true},
		{"target ip", Filter{Target: "203.0.113.7"}, true},
		{"target key=value", Filter{Target: "ip=203.0.113.7"}, true},
		{"target wrong key", Filter{Target: "user=203.0.113.7"}, false},
		{"target partial value", Filter{Target: "alice"}, false},
		{"target other", Filter{Target: "bob@contoso.com"}, false},
		{"outcome", Filter{Outcome: "succeeded"}, true},
		{"outcome other", Filter{Outcome: "failed"}, false},
		{"playbook", Filter{Playbook: "forwarding-rule"}, true},
		{"playbook other", Filter{Playbook: "risky-user"}, false},
		{"request", Filter{RequestID: "req-1"}, true},
		{"request other", Filter{RequestID: "req-2"}, false},
		{"tenant", Filter{TenantID: "contoso"}, true},
		{"tenant other", Filter{TenantID: "fabrikam"}, false},
		{"all fields", Filter{Since: at, Until: at.Add(1), Actor: "playbook", Action: "disable_user", Target: "alice@contoso.com",
			Outcome: "succeeded", Playbook: "forwarding-rule", RequestID: "req-1", TenantID: "contoso"}, true},
		{"all but one", Filter{Actor: "playbook", Action: "disable_user", Outcome: "failed"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(r); got != tt.want {
				t.Errorf("Match = %t, want %t", got, tt.want)
			}
		})
	}
	if (Filter{}).Match(Record{}) != true {
		t.Error("the empty filter must match an empty record")
	}
	if !(Filter{}).IsZero() || (Filter{Target: "x"}).IsZero() || (Filter{Until: at}).IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestFilterSubject(t *testing.T) {
	tests := []struct {
		f    Filter
		want string
	}{
		{Filter{}, ""},
		{Filter{Actor: "x", Target: "y", Since: time.Now()}, ""},
		{Filter{TenantID: "contoso"}, bus.AuditFilter("contoso")},
		{Filter{Outcome: "failed"}, "responder.*.audit.failed.*"},
		{Filter{Action: "disable_user"}, "responder.*.audit.*.disable_user"},
		{Filter{TenantID: "contoso.onmicrosoft.com", Outcome: "failed", Action: "a.b"}, "responder.contoso_onmicrosoft_com.audit.failed.a_b"},
	}
	for _, tt := range tests {
		if got := tt.f.subject(); got != tt.want {
			t.Errorf("%+v: subject %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestListFiltersAndTerminates(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)

	// An empty stream: List returns at once.
	calls := 0
	if err := List(ctx, b.JS, Filter{}, func(Record) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("List on an empty stream: %d calls, %v", calls, err)
	}

	w := NewWriter(b.JS, WriterOptions{Logger: quiet, Now: fixedClock()})
	var want []Record
	for i := range 12 {
		r := sample(i)
		switch i % 3 {
		case 1:
			r.TenantID = "fabrikam"
		case 2:
			r.Outcome = Failed
		}
		got, err := w.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, got)
	}
	count := func(f Filter) int {
		t.Helper()
		n := 0
		var last uint64
		if err := List(ctx, b.JS, f, func(r Record) error {
			if r.Seq <= last {
				t.Errorf("List out of order: seq %d after %d", r.Seq, last)
			}
			last = r.Seq
			if !f.Match(r) {
				t.Errorf("List passed %+v, which %+v does not match", r, f)
			}
			n++
			return nil
		}); err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		return n
	}
	for _, tt := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 12},
		{Filter{TenantID: "fabrikam"}, 4},
		{Filter{TenantID: "contoso", Outcome: "failed"}, 4},
		{Filter{Outcome: "succeeded"}, 8},
		{Filter{TenantID: "nobody"}, 0}, // nothing on the subject at all
		{Filter{Action: "nothing"}, 0},
		{Filter{Target: "USER5@contoso.com"}, 1},
		{Filter{Since: want[3].Time, Until: want[6].Time}, 3},
	} {
		if got := count(tt.f); got != tt.want {
			t.Errorf("List(%+v) passed %d records, want %d", tt.f, got, tt.want)
		}
	}

	// fn's error stops List and comes back as is.
	stop := errors.New("enough")
	n := 0
	err := List(ctx, b.JS, Filter{}, func(Record) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("List with a failing fn: %v after %d calls", err, n)
	}

	// Non-records in the stream are skipped.
	if _, err := b.JS.Publish(ctx, bus.AuditSubject("contoso", "succeeded", "x"), []byte("{oops")); err != nil {
		t.Fatal(err)
	}
	if got := count(Filter{}); got != 12 {
		t.Errorf("List with garbage in the stream passed %d records, want 12", got)
	}
}

// List returns at the end as it was when it began, even while a writer keeps
// appending.
func TestListTerminatesWhileWritersAppend(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(connect(t, b), WriterOptions{Logger: quiet})
	appendN(t, ctx, w, 20)

	wctx, stop := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		n := 0
		for wctx.Err() == nil {
			if _, err := w.Append(wctx, sample(n)); err == nil {
				n++
			}
		}
		done <- n
	}()
	var got int
	err := List(ctx, b.JS, Filter{}, func(Record) error {
		got++
		return nil
	})
	stop()
	appended := <-done
	if err != nil {
		t.Fatal(err)
	}
	if got < 20 || got > 20+appended {
		t.Fatalf("List passed %d records; 20 were stored before it began, %d after", got, appended)
	}
}

func TestGet(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	var recs []Record
	for i, o := range []Outcome{Accepted, Accepted, Succeeded, Failed} {
		r := sample(i)
		r.RequestID = "req-A"
		if i == 1 {
			r.RequestID = "req-B"
		}
		r.Outcome = o
		got, err := w.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got)
	}

	for _, r := range recs {
		got, err := Get(ctx, b.JS, r.ID)
		if err != nil || got.ID != r.ID || got.Hash != r.Hash {
			t.Errorf("Get(%s) = %s, %v", r.ID, got.ID, err)
		}
	}
	if got, err := Get(ctx, b.JS, "req-A"); err != nil || got.ID != recs[3].ID || got.Outcome != Failed {
		t.Errorf("Get(req-A) = %s %s, %v; want the latest record of the request", got.ID, got.Outcome, err)
	}
	if got, err := Get(ctx, b.JS, "req-B"); err != nil || got.ID != recs[1].ID {
		t.Errorf("Get(req-B) = %s, %v", got.ID, err)
	}
	for _, id := range []string{"nope", ""} {
		if _, err := Get(ctx, b.JS, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
}
