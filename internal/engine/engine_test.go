package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

type harness struct {
	t      *testing.T
	sim    *m365sim.Tenant
	dir    string
	eng    *Engine
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return &harness{t: t, sim: sim, dir: t.TempDir()}
}

// start runs an engine on the harness's data directory until stop.
func (h *harness) start(protected ...string) {
	h.startWith(func(*Config) {}, protected...)
}

func (h *harness) startWith(opt func(*Config), protected ...string) {
	h.t.Helper()
	info := h.sim.Info()
	cfg := Config{
		Bus: bus.Config{StoreDir: h.dir, Port: -1},
		Credentials: m365.Credentials{
			TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, HTTPClient: h.sim.HTTPClient(),
		},
		PlaybookDir:              "../../playbooks",
		Protected:                actions.Protected{Users: protected},
		Feeds:                    []string{FeedRiskDetections},
		IdentityProtectionBudget: feeds.NewTenantBudget(50, time.Second),
		RiskInterval:             50 * time.Millisecond,
		PageGap:                  time.Millisecond,
		RetryBase:                50 * time.Millisecond,
		RetryMax:                 time.Second,
		Logger:                   slog.New(slog.DiscardHandler),
	}
	opt(&cfg)
	eng, err := New(context.Background(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.eng, h.cancel, h.done = eng, cancel, make(chan error, 1)
	go func() { h.done <- eng.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.eng == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("engine run: %v", err)
	}
	h.eng.Close()
	h.eng = nil
}

// waitFinal waits for the final audit record of a request id (or of any request
// matching pred), reading the stream from the start.
func (h *harness) waitFinal(pred func(audit.Record) bool) audit.Record {
	h.t.Helper()
	return h.waitRecord(func(r audit.Record) bool { return r.Outcome.Final() && pred(r) })
}

// waitRecord waits for the first audit record matching pred.
func (h *harness) waitRecord(pred func(audit.Record) bool) audit.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := h.eng.Bus().JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		h.t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			h.t.Fatalf("waiting for a final audit record: %v", err)
		}
		var r audit.Record
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			h.t.Fatal(err)
		}
		if pred(r) {
			return r
		}
	}
}

func (h *harness) records() []audit.Record {
	h.t.Helper()
	var out []audit.Record
	if err := audit.List(context.Background(), h.eng.Bus().JS, audit.Filter{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) publishRaw(subject string, data []byte) {
	h.t.Helper()
	if _, err := h.eng.Bus().JS.Publish(context.Background(), subject, data); err != nil {
		h.t.Fatal(err)
	}
}

// publishSigned sends req signed with the data directory's local administrator key.
func (h *harness) publishSigned(req *actions.Request) {
	h.t.Helper()
	kp, err := analyst.LoadDefaultKey(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := analyst.Publish(context.Background(), h.eng.Bus().JS, h.eng.Tenant(), req, kp); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) attack(upn string) {
	u, ok := h.sim.User(upn)
	if !ok {
		h.t.Fatalf("no seeded user %s", upn)
	}
	h.sim.InjectRiskDetection(m365sim.RiskDetection{UserID: u.ID, UserPrincipalName: u.UserPrincipalName,
		RiskEventType: "unlikelyTravel", RiskLevel: "high", IPAddress: "198.51.100.23"})
}

func analystRequest(action actions.Name, user string) *actions.Request {
	return &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: action,
		Target: actions.Target{User: user}, RequestedBy: audit.Actor{Kind: "analyst", Name: analyst.LocalAdminName},
		Reason: "test", RequestedAt: time.Now().UTC()}
}

func TestMalformedActionMessagesAreRejectedAndTheNextRuns(t *testing.T) {
	h := newHarness(t)
	h.start()
	tenant := h.eng.Tenant()
	subj := bus.ActionSubject(tenant, "disable_user")
	h.publishRaw(subj, []byte(`{"version":1,"id":`))                                                                                                                                             // bad JSON
	h.publishRaw(subj, []byte(`{"version":1,"id":"`+uuid.NewString()+`","action":"format_disk","target":{"user":"bob@contoso.com"},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`)) // unknown action
	h.publishRaw(subj, []byte(`{"version":1,"id":"`+uuid.NewString()+`","action":"disable_user","target":{},"requested_by":{"kind":"analyst","name":"x"},"reason":"r"}`))                        // missing user
	unsigned := analystRequest(actions.DisableUser, "alice@contoso.com")
	if err := actions.Publish(context.Background(), h.eng.Bus().JS, tenant, unsigned); err != nil {
		t.Fatal(err)
	}
	good := analystRequest(actions.DisableUser, "bob@contoso.com")
	h.publishSigned(good)
	r := h.waitFinal(func(r audit.Record) bool { return r.RequestID == good.ID })
	if r.Outcome != audit.Succeeded {
		t.Fatalf("good request after bad ones: %s %s", r.Outcome, r.Detail)
	}
	if u, _ := h.sim.User("bob@contoso.com"); u.AccountEnabled {
		t.Error("bob still enabled")
	}
	var reasons []string
	for _, rec := range h.records() {
		if rec.Outcome == audit.Rejected {
			reasons = append(reasons, rec.Detail)
			if len(rec.Before) == 0 {
				t.Errorf("rejected record %s keeps no dead letter", rec.ID)
			}
		}
	}
	want := []string{"malformed request", `unknown action "format_disk"`, "needs target.user", "unsigned"}
	if len(reasons) != len(want) {
		t.Fatalf("rejected reasons = %q, want %d", reasons, len(want))
	}
	// Workers run concurrently: each expected reason once, in any order.
	for _, w := range want {
		n := 0
		for _, r := range reasons {
			if strings.Contains(r, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("reason %q found %d times in %q", w, n, reasons)
		}
	}
}

func TestProtectedUserIsNeverActionedByPlaybook(t *testing.T) {
	h := newHarness(t)
	h.start("breakglass@contoso.com")
	h.attack("breakglass@contoso.com")
	r := h.waitFinal(func(r audit.Record) bool { return r.Target["user"] == "breakglass@contoso.com" })
	if r.Outcome != audit.Refused || !strings.Contains(r.Detail, "protected") {
		t.Fatalf("protected user: %s %q, want refused", r.Outcome, r.Detail)
	}
	// Refusal stops the run: the second step is never requested.
	h.attack("bob@contoso.com")
	h.waitFinal(func(r audit.Record) bool {
		return r.Target["user"] == "bob@contoso.com" && r.Action == "revoke_sessions"
	})
	if u, _ := h.sim.User("breakglass@contoso.com"); !u.AccountEnabled || u.RevokeCount != 0 {
		t.Errorf("break-glass account was touched: enabled=%t revokes=%d", u.AccountEnabled, u.RevokeCount)
	}
	for _, w := range h.sim.WireLog() {
		if w.Method == "PATCH" && strings.Contains(strings.ToLower(w.Path), "breakglass") {
			t.Errorf("Graph call on the protected account: %s %s", w.Method, w.Path)
		}
	}
}

func TestRestartDoesNotRerunHandledEvents(t *testing.T) {
	h := newHarness(t)
	h.start()
	// The playbook's last step waits for approval: its pending record is the
	// last record of a handled event.
	last := func(user string) func(audit.Record) bool {
		return func(r audit.Record) bool {
			return r.Target["user"] == user && r.Action == "confirm_compromised" && r.Outcome == audit.PendingApproval
		}
	}
	count := func(user string) int {
		n := 0
		for _, r := range h.records() {
			if r.Target["user"] == user {
				n++
			}
		}
		return n
	}
	h.attack("alice@contoso.com")
	h.waitRecord(last("alice@contoso.com"))
	before, aliceBefore := len(h.records()), count("alice@contoso.com")
	if aliceBefore < 6 { // matched, accepted+succeeded for each of two steps, pending approval
		t.Fatalf("alice has %d audit records, want at least 6", aliceBefore)
	}
	h.stop()

	h.start()
	// A sentinel attack after the restart: events are handled in order, so once
	// bob is handled any re-run of alice's event would have happened.
	h.attack("bob@contoso.com")
	h.waitRecord(last("bob@contoso.com"))
	if alice := count("alice@contoso.com"); alice != aliceBefore {
		t.Errorf("alice has %d audit records after restart, want %d (nothing re-run)", alice, aliceBefore)
	}
	if after := len(h.records()); after != before+aliceBefore {
		t.Errorf("records %d -> %d, want exactly bob's %d more", before, after, aliceBefore)
	}
	patches, revokes := 0, 0
	for _, w := range h.sim.WireLog() {
		p := strings.ToLower(w.Path)
		if !strings.Contains(p, "alice") {
			continue
		}
		if w.Method == "PATCH" {
			patches++
		}
		if strings.HasSuffix(p, "/revokesigninsessions") {
			revokes++
		}
	}
	if patches != 1 || revokes != 1 {
		t.Errorf("Graph writes on alice: %d PATCH, %d revoke; want 1 each", patches, revokes)
	}
	if u, _ := h.sim.User("alice@contoso.com"); u.RevokeCount != 1 {
		t.Errorf("alice revoked %d times", u.RevokeCount)
	}
	v, err := audit.Verify(context.Background(), h.eng.Bus().JS)
	if err != nil || !v.OK {
		t.Errorf("verify: %+v %v", v, err)
	}
}

func TestSuppressionFiresOncePerUserAndWindow(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.attack("alice@contoso.com")
	h.waitFinal(func(r audit.Record) bool {
		return r.Target["user"] == "alice@contoso.com" && r.Action == "revoke_sessions"
	})
	h.attack("alice@contoso.com") // a second detection within the hour
	r := h.waitFinal(func(r audit.Record) bool {
		return r.Target["user"] == "alice@contoso.com" && r.Outcome == audit.Skipped
	})
	if !strings.Contains(r.Detail, "suppressed") || r.Playbook != "high-risk-user" {
		t.Errorf("second firing: %s %q", r.Outcome, r.Detail)
	}
	if u, _ := h.sim.User("alice@contoso.com"); u.RevokeCount != 1 {
		t.Errorf("alice revoked %d times, want 1 (suppressed)", u.RevokeCount)
	}
}

func TestBlastRadiusRefusesPastTheLimit(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	pb := `name: tight
enabled: true
trigger:
  source: risk_detection
  when:
    - field: raw.riskLevel
      equals: high
steps:
  - action: revoke_sessions
    target:
      user: "{{ user }}"
blast_radius:
  max: 2
  window: 1h
`
	if err := os.WriteFile(filepath.Join(dir, "tight.yaml"), []byte(pb), 0o600); err != nil {
		t.Fatal(err)
	}
	h.startWith(func(c *Config) { c.PlaybookDir = dir })
	for _, u := range []string{"alice@contoso.com", "bob@contoso.com"} {
		h.attack(u)
		h.waitFinal(func(r audit.Record) bool { return r.Target["user"] == u })
	}
	h.sim.AddUser(m365sim.User{UserPrincipalName: "dave@contoso.com", DisplayName: "Dave"})
	h.attack("dave@contoso.com")
	r := h.waitRecord(func(r audit.Record) bool {
		return r.Target["user"] == "dave@contoso.com" && (r.Outcome.Final() || r.Outcome == audit.PendingApproval)
	})
	if r.Outcome != audit.PendingApproval || !strings.Contains(r.Reason, "blast radius") {
		t.Fatalf("third firing: %s %q (reason %q), want held for approval past the blast radius", r.Outcome, r.Detail, r.Reason)
	}
	if u, _ := h.sim.User("dave@contoso.com"); u.RevokeCount != 0 {
		t.Error("dave was actioned past the limit without approval")
	}
	if u, _ := h.sim.User("bob@contoso.com"); u.RevokeCount != 1 {
		t.Error("bob, within the limit, was not actioned")
	}

	// An analyst approves: the held request runs, audited as approved then succeeded.
	rep := h.approve(r.RequestID)
	if !rep.OK || !rep.Complete {
		t.Fatalf("approve: %+v", rep)
	}
	done := h.waitFinal(func(x audit.Record) bool { return x.RequestID == r.RequestID })
	if done.Outcome != audit.Succeeded {
		t.Fatalf("after approval: %s %q", done.Outcome, done.Detail)
	}
	if u, _ := h.sim.User("dave@contoso.com"); u.RevokeCount != 1 {
		t.Errorf("dave revoked %d times after approval, want 1", u.RevokeCount)
	}
}

func (h *harness) approve(requestID string) approval.Reply {
	h.t.Helper()
	kp, err := analyst.LoadDefaultKey(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := approval.Send(ctx, h.eng.Bus().NC, h.eng.Tenant(), approval.Command{
		Op: "approve", RequestID: requestID, By: audit.Actor{Kind: "analyst", Name: analyst.LocalAdminName},
	}, kp)
	if err != nil {
		h.t.Fatal(err)
	}
	return rep
}

func TestMetricsCountEventsMatchesAndActions(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.attack("alice@contoso.com")
	h.waitFinal(func(r audit.Record) bool {
		return r.Target["user"] == "alice@contoso.com" && r.Action == "revoke_sessions"
	})
	gather := func() map[string]float64 {
		mfs, err := h.eng.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				switch {
				case m.GetCounter() != nil:
					got[key] = m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					got[key] = float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return got
	}
	// The outcome is counted once its audit record is stored, which the
	// test may see first: wait (bounded) for the last count.
	got := gather()
	for deadline := time.Now().Add(10 * time.Second); got["responder_actions_total,action=revoke_sessions,outcome=succeeded"] < 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		got = gather()
	}
	for _, k := range []string{
		"responder_events_total,kind=unlikelyTravel,source=risk_detection",
		"responder_playbook_matches_total,playbook=high-risk-user",
		"responder_actions_total,action=disable_user,outcome=succeeded",
		"responder_actions_total,action=revoke_sessions,outcome=succeeded",
	} {
		if got[k] != 1 {
			t.Errorf("%s = %v, want 1", k, got[k])
		}
	}
	if got["responder_event_to_action_seconds"] < 2 {
		t.Errorf("event-to-action latency observed %v times, want 2", got["responder_event_to_action_seconds"])
	}
	graph := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "responder_graph_calls_total") {
			graph += v
		}
	}
	if graph < 2 {
		t.Errorf("Graph calls counted %v, want at least the two writes", graph)
	}
}

func TestReloadKeepsTheLastGoodPlaybooks(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	good := "name: one\nenabled: true\ntrigger:\n  source: risk_detection\nsteps:\n  - action: revoke_sessions\n    target:\n      user: \"{{ user }}\"\n"
	if err := os.WriteFile(filepath.Join(dir, "one.yaml"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	h.startWith(func(c *Config) { c.PlaybookDir = dir })
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte("name: two\nenabled: true\nbogus_field: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := h.eng.ReloadPlaybooks()
	if err == nil || !strings.Contains(err.Error(), "two.yaml") {
		t.Fatalf("reload of an invalid set: %v, want an error naming two.yaml", err)
	}
	if n := len(h.eng.Playbooks().Playbooks()); n != 1 {
		t.Errorf("after a refused reload the engine has %d playbooks, want the last good 1", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte(strings.ReplaceAll(good, "one", "two")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.ReloadPlaybooks(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.eng.Playbooks().Playbooks()); n != 2 {
		t.Errorf("after a good reload: %d playbooks, want 2", n)
	}
}

// TestPlaybookFilesChangedAreReloaded: the engine notices changed playbook
// files by itself; a broken edit is refused and the last good set stays until
// the files are fixed.
func TestPlaybookFilesChangedAreReloaded(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	good := "name: one\nenabled: true\ntrigger:\n  source: risk_detection\nsteps:\n  - action: revoke_sessions\n    target:\n      user: \"{{ user }}\"\n"
	if err := os.WriteFile(filepath.Join(dir, "one.yaml"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	h.startWith(func(c *Config) {
		c.PlaybookDir = dir
		c.PlaybookWatch = 10 * time.Millisecond
	})
	names := func() []string {
		var out []string
		for _, p := range h.eng.Playbooks().Playbooks() {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: playbooks are %v", what, names())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	before := h.eng.Playbooks()
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte(strings.ReplaceAll(good, "one", "two")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("a new file is picked up", func() bool { return slices.Equal(names(), []string{"one", "two"}) })
	if h.eng.Playbooks() == before {
		t.Fatal("the set was not replaced")
	}
	good2 := h.eng.Playbooks()
	refused := func() float64 {
		mfs, err := h.eng.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "responder_playbook_reloads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" && l.GetValue() == "refused" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	// A broken edit (an invalid file beside a new good one): refused, the
	// last good set stays.
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte("name: two\nenabled: true\nbogus_field: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "three.yaml"), []byte(strings.ReplaceAll(good, "one", "three")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("the broken edit is refused", func() bool { return refused() >= 1 })
	if h.eng.Playbooks() != good2 {
		t.Fatalf("a broken edit replaced the set: %v", names())
	}
	if err := os.Remove(filepath.Join(dir, "two.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor("the fixed directory is picked up", func() bool { return slices.Equal(names(), []string{"one", "three"}) })
}

// TestPlaybooksUseTheTenantsVerifiedDomains: without --verified-domains the
// engine reads the tenant's verified domains, so that forwarding to another
// of the tenant's own domains is not "external".
func TestPlaybooksUseTheTenantsVerifiedDomains(t *testing.T) {
	h := newHarness(t)
	h.startWith(func(c *Config) { c.VerifiedDomains = nil })
	rec := func(to string) *event.Envelope {
		raw := `{"CreationTime":"2026-11-18T07:41:09","Id":"` + uuid.NewString() + `","Operation":"New-InboxRule","RecordType":1,"ResultStatus":"True","Workload":"Exchange","UserId":"alice@contoso.com","ClientIP":"198.51.100.23:51512","Parameters":[{"Name":"ForwardTo","Value":"` + to + `"},{"Name":"Name","Value":"x"}]}`
		env, err := event.Normalize("", json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		return &env
	}
	set := h.eng.Playbooks().WithAllEnabled()
	fires := func(to string) bool {
		ms, err := set.Match(rec(to))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Playbook == "external-forwarding-rule" {
				return true
			}
		}
		return false
	}
	if fires("finance@contoso.onmicrosoft.com") {
		t.Error("forwarding to the tenant's own contoso.onmicrosoft.com counted as external")
	}
	if !fires("drop@evil.example") {
		t.Error("forwarding to evil.example did not fire the playbook")
	}
}
