package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// purgeLatency is the Graph latency of the purge scenario.
const purgeLatency = 50 * time.Millisecond

// purgePageSize is the $top purge_mail asks for when it searches a mailbox.
const purgePageSize = 100

// purgeWideMailboxes is the mailbox count of the second purge run: the
// executor's default PurgeMailboxes, so every mailbox is searched at once.
const purgeWideMailboxes = 8

// purgeBound is the shortest time Outlook's per-mailbox budgets allow for one
// hard purge of perMailbox messages in each of mailboxes mailboxes, at latency
// per call:
//
//   - the search: ceil(perMailbox / 100) pages of $top=100, one after the other
//     (each page's nextLink comes with the page before);
//   - the deletes: one permanentDelete per message, at most 4 in flight per
//     mailbox (Outlook's concurrency per app and mailbox), so
//     ceil(perMailbox / 4) rounds of one latency;
//   - mailboxes are independent budgets and are purged in parallel, 8 at a time
//     (graphexec's PurgeMailboxes), so more than 8 mailboxes take
//     ceil(mailboxes / 8) such rounds;
//   - the request budget (10,000 requests / 10 min per app and mailbox) binds
//     only past 10,000 calls in a mailbox: then the calls past the burst at
//     the sustained rate, if that is longer.
//
// Bound per mailbox = max((pages + ceil(perMailbox/4)) x latency, (calls -
// 10,000) / (10,000 / 600 s)); whole bound = that x ceil(mailboxes / 8). The
// engine's own costs (NATS, audit, TLS, JSON) are what the ratio measures.
func purgeBound(l m365sim.Limits, mailboxes, perMailbox int, latency time.Duration) time.Duration {
	conc := max(l.OutlookConcurrency, 1)
	pages := max(1, ceilDiv(perMailbox, purgePageSize))
	byLatency := time.Duration(pages+ceilDiv(perMailbox, conc)) * latency
	var byRate time.Duration
	if c, per := l.OutlookRequests.Capacity, l.OutlookRequests.Per; c > 0 && per > 0 {
		calls := float64(pages + perMailbox)
		byRate = time.Duration(math.Max(0, calls-c) / (c / per.Seconds()) * float64(time.Second))
	}
	waves := max(1, ceilDiv(mailboxes, purgeWideMailboxes))
	return time.Duration(waves) * max(byLatency, byRate)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// purgeRun is one timed purge_mail request.
type purgeRun struct {
	mailboxes   int
	elapsed     time.Duration
	bound       time.Duration
	maxInFlight int  // highest concurrent requests seen on any one mailbox
	notPurged   int  // seeded messages not permanently deleted afterwards
	keptOther   bool // the other campaign's message is still in every mailbox
	failedCalls int  // Outlook calls answered with an error other than 429
	calls       int  // Outlook calls on the wire
	throttled   int  // of which answered 429
	outcome     actions.Outcome
}

func (r purgeRun) ratio() float64 { return r.elapsed.Seconds() / r.bound.Seconds() }

// runPurge hard-deletes N messages (default 200) of one phishing campaign,
// found by internet message id, first in one mailbox, then in each of 8
// mailboxes, each time as one purge_mail request through the action worker and
// the Graph executor, with the emulator's throttling on (4 concurrent requests
// per mailbox, 10,000 requests / 10 min) and 50 ms latency on every Graph call.
// The result is the run with the higher ratio to its bound: both must reach
// the goal.
func runPurge(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 200
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	sim, err := throttledTenant(o, purgeLatency)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	limits := m365sim.DefaultLimits()
	sim.SetLimits(limits)

	// The engine paces itself to Microsoft's budgets, which the emulator enforces.
	budgets := graphexec.NewBudgets(graphexec.BudgetConfig{OutlookConcurrency: limits.OutlookConcurrency})
	run, err := startScenario(ctx, o, dir, sim, budgets)
	if err != nil {
		return Result{}, err
	}
	defer run.close()
	st, outs := run.workerStack, run.outs

	// Warm-up outside the timing: the worker's consumer, the Graph token and
	// the TLS connection, with a purge that finds nothing.
	warm := sim.AddUser(m365sim.User{UserPrincipalName: "purge-warmup@contoso.com"})
	if _, err := publishAndWait(ctx, st, outs, []*actions.Request{purgeRequest("<warmup@bench.example>", warm.UserPrincipalName)}, time.Minute); err != nil {
		return Result{}, fmt.Errorf("bench: purge warm-up: %w", err)
	}

	runs := make([]purgeRun, 0, 2)
	for i, boxes := range []int{1, purgeWideMailboxes} {
		o.progressf("purge: %d messages in each of %d mailbox(es) (throttling on, %s latency)", n, boxes, purgeLatency)
		r, err := purgeOnce(ctx, sim, st, outs, limits, i, boxes, n)
		if err != nil {
			return Result{}, err
		}
		runs = append(runs, r)
	}
	var ids []string
	outs.mu.Lock()
	for id, out := range outs.got {
		if out.Action == actions.PurgeMail {
			ids = append(ids, id)
		}
	}
	outs.mu.Unlock()
	audited, err := countSucceeded(ctx, st, actions.PurgeMail, ids)
	if err != nil {
		return Result{}, err
	}

	worst := runs[0]
	if runs[1].ratio() > worst.ratio() {
		worst = runs[1]
	}
	conc := workerConcurrency(o.Concurrency)
	extra := map[string]any{
		"graph_latency_ms":      ms(purgeLatency),
		"worst_run_mailboxes":   worst.mailboxes,
		"audit_succeeded":       audited,
		"purge_requests":        len(ids),
		"max_in_flight_allowed": limits.OutlookConcurrency,
	}
	res := Result{
		Measured: worst.elapsed.Seconds(), Unit: "s", Bound: worst.bound.Seconds(), N: n, Concurrency: conc,
		BoundNote: fmt.Sprintf("the slower (by ratio) of the 1- and %d-mailbox runs; per mailbox ceil(%d/%d) search pages + ceil(%d/%d) delete rounds (at most %d requests in flight per mailbox) x %s, mailboxes in parallel",
			purgeWideMailboxes, n, purgePageSize, n, limits.OutlookConcurrency, limits.OutlookConcurrency, purgeLatency),
		Goal:  Goal{AtMost, 1.05},
		Extra: extra,
	}
	for _, r := range runs {
		k := fmt.Sprintf("mailboxes_%d_", r.mailboxes)
		extra[k+"s"] = r.elapsed.Seconds()
		extra[k+"bound_s"] = r.bound.Seconds()
		extra[k+"ratio"] = r.ratio()
		extra[k+"messages_per_s"] = float64(r.mailboxes*n) / r.elapsed.Seconds()
		extra[k+"max_in_flight_per_mailbox"] = r.maxInFlight
		extra[k+"outlook_calls"] = r.calls
		extra[k+"outlook_429"] = r.throttled
		extra[k+"ratio_met"] = res.Goal.Met(r.ratio())
		res.AddCheck(fmt.Sprintf("%d mailbox(es): nothing left, nothing else touched", r.mailboxes), r.notPurged == 0 && r.keptOther,
			fmt.Sprintf("%d of %d seeded messages not purged; the other campaign's message kept: %t", r.notPurged, r.mailboxes*n, r.keptOther))
		res.AddCheck(fmt.Sprintf("%d mailbox(es): the request succeeded", r.mailboxes), r.outcome.Outcome == audit.Succeeded && r.failedCalls == 0,
			fmt.Sprintf("outcome %s; %d Outlook calls failed other than 429 (%d answered 429)", r.outcome.Outcome, r.failedCalls, r.throttled))
		res.AddCheck(fmt.Sprintf("%d mailbox(es): never more than %d in flight per mailbox", r.mailboxes, limits.OutlookConcurrency),
			r.maxInFlight > 0 && r.maxInFlight <= limits.OutlookConcurrency,
			fmt.Sprintf("at most %d requests in flight on one mailbox (emulator's count)", r.maxInFlight))
	}
	res.AddCheck("every purge audited as succeeded", audited == len(ids) && len(ids) == len(runs)+1,
		fmt.Sprintf("%d succeeded audit records for %d purge requests (the warm-up's included)", audited, len(ids)))
	return res, nil
}

// purgeOnce seeds boxes new mailboxes with n messages of one campaign, purges
// them with one hard purge_mail request and checks what is left.
func purgeOnce(ctx context.Context, sim *m365sim.Tenant, st *workerStack, outs *outcomes, limits m365sim.Limits, run, boxes, n int) (purgeRun, error) {
	phish := fmt.Sprintf("<campaign%d-%s@evil.example>", run, uuid.NewString()[:8])
	upns := make([]string, boxes)
	seeded := map[string][]string{}
	others := map[string]string{}
	for b := range upns {
		u := sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("purge%d-%02d@contoso.com", run, b)})
		upns[b] = u.UserPrincipalName
		for i := 0; i < n; i++ {
			id, err := sim.AddMessage(u.UserPrincipalName, m365sim.Message{InternetMessageID: phish,
				Subject: "Invoice overdue", FromAddress: "billing@evil.example"})
			if err != nil {
				return purgeRun{}, err
			}
			seeded[u.UserPrincipalName] = append(seeded[u.UserPrincipalName], id)
		}
		// A message of another campaign stays: the search must be exact.
		other, err := sim.AddMessage(u.UserPrincipalName, m365sim.Message{Subject: "Lunch", FromAddress: "colleague@contoso.com"})
		if err != nil {
			return purgeRun{}, err
		}
		others[u.UserPrincipalName] = other
	}
	bound := purgeBound(limits, boxes, n, purgeLatency)
	sim.ResetWireLog()
	req := purgeRequest(phish, upns...)
	elapsed, err := publishAndWait(ctx, st, outs, []*actions.Request{req}, 2*bound+2*time.Minute)
	if err != nil {
		return purgeRun{}, err
	}
	r := purgeRun{mailboxes: boxes, elapsed: elapsed, bound: bound}
	outs.mu.Lock()
	r.outcome = outs.got[req.ID]
	outs.mu.Unlock()
	r.keptOther = true
	for _, upn := range upns {
		r.maxInFlight = max(r.maxInFlight, sim.MaxInFlight(upn))
		if f, _ := sim.MessageState(upn, others[upn]); f == "purged" || f == "" {
			r.keptOther = false
		}
		for _, id := range seeded[upn] {
			if f, _ := sim.MessageState(upn, id); f != "purged" {
				r.notPurged++
			}
		}
	}
	for _, w := range sim.WireLog() {
		if w.Mailbox == "" {
			continue
		}
		r.calls++
		switch {
		case w.Status == 429:
			r.throttled++
		case w.Status < 200 || w.Status > 299:
			r.failedCalls++
		}
	}
	return r, nil
}

func purgeRequest(messageID string, mailboxes ...string) *actions.Request {
	boxes := make([]any, len(mailboxes))
	for i, m := range mailboxes {
		boxes[i] = m
	}
	return &actions.Request{
		Version: actions.Version, ID: uuid.NewString(), Action: actions.PurgeMail,
		Target:      actions.Target{MessageID: messageID},
		Params:      map[string]any{"mailboxes": boxes, "hard": true},
		RequestedBy: audit.Actor{Kind: "analyst", Name: "bench"}, Reason: "bench: phishing campaign purge",
		RequestedAt: time.Now().UTC(),
	}
}

// countSucceeded counts the succeeded audit records of action among the
// requests ids, read back from the audit stream.
func countSucceeded(ctx context.Context, st *workerStack, action actions.Name, ids []string) (int, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	err := audit.List(ctx, st.bus.JS, audit.Filter{TenantID: st.tenant, Action: string(action), Outcome: string(audit.Succeeded)}, func(r audit.Record) error {
		if want[r.RequestID] {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bench: read the audit trail: %w", err)
	}
	return n, nil
}

// workerConcurrency is the action worker's requests in flight: c, or
// actions.NewWorker's default (128) for 0.
func workerConcurrency(c int) int {
	if c <= 0 {
		return 128
	}
	return c
}
