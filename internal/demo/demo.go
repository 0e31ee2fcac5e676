package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
	"github.com/responder-sec/responder/internal/playbook"
)

// Options configure one demo run.
type Options struct {
	Out         io.Writer // the timeline (default io.Discard)
	DataDir     string    // embedded NATS store; "" = a fresh temporary directory
	PlaybookDir string    // default "playbooks"
	// Timeout bounds one scenario (default 60s); RunAll gives each its own.
	Timeout time.Duration
	Logger  *slog.Logger
	// Scenario names the attack to play (see Scenarios); "" is the risky user.
	Scenario string
	// User is the seeded user the attack targets (default alice@contoso.com).
	User string
	// Protected identities (default: the seeded break-glass account).
	Protected []string
	// Approve approves every step that waits for approval, as the local
	// administrator, and waits for it to run. Without it such a step is done
	// once it is pending.
	Approve bool
	// Prepare may change the tenant before the attack (faults, permissions).
	Prepare func(*m365sim.Tenant)
	// Engine may change the engine's configuration before it starts.
	Engine func(engine.Config) engine.Config
	// Console, when set, is called once the engine is built and before it
	// runs (demo --console mounts the web console there); the func it
	// returns is called when the demo ends.
	Console func(eng *engine.Engine, tenant *m365sim.Tenant) (func(), error)
	// Hold, when set, is called after a scenario that passed, while the
	// engine and the tenant keep running, with the caller's context (not
	// bounded by Timeout): demo --console waits there until interrupted,
	// and the console's browser tests drive it.
	Hold func(ctx context.Context, eng *engine.Engine, tenant *m365sim.Tenant, res Result) error
}

// Result is what a run observed.
type Result struct {
	Scenario string // the scenario's name
	Playbook string // the playbook it exercises
	// User is the attacked user after the run.
	User      m365sim.User
	Records   []audit.Record
	Verify    audit.VerifyResult
	Contained bool
	Elapsed   time.Duration
	// FirstAction is the time from the start of the attack to the first step
	// the playbook completed (0 when none did).
	FirstAction time.Duration
	// Pending are the records of the steps left waiting for approval.
	Pending []audit.Record
	// Attack is what the attack did.
	Attack Attack
	// Rules are the attacked mailbox's inbox rules after the run, and
	// NamedLocations the tenant's Conditional Access named locations.
	Rules          []map[string]any
	NamedLocations []map[string]any
	// Machines, Indicators and SenderBlocks are the tenant's Defender devices,
	// Defender indicators and Tenant Allow/Block List sender entries after
	// the run.
	Machines     []m365sim.Machine
	Indicators   []m365sim.DefenderIndicator
	SenderBlocks []m365sim.TABLEntry
	// Err is why the scenario did not pass (set by RunAll; Run returns it).
	Err error
}

// Attack is what a scenario's attack did in the tenant.
type Attack struct {
	SourceIP   string // the attacker's address ("" when the attack has none)
	RuleID     string // the inbox rule the attacker created
	KeptRuleID string // the user's own internal forwarding rule, which must survive
	ForwardTo  string // the attacker's mailbox
	// PhishMessageID is the phishing mail's internet message id; PhishCopies
	// its message id in each mailbox (by UPN).
	PhishMessageID string
	PhishCopies    map[string]string
}

// BreakGlass is the seeded emergency-access account, protected by default.
const BreakGlass = "breakglass@contoso.com"

// ErrPlaybookDisabled says that the scenario's playbook is switched off.
var ErrPlaybookDisabled = errors.New("playbook disabled")

// demoDomains are the verified domains of the seeded tenant.
func demoDomains() []string { return []string{"contoso.com", "contoso.onmicrosoft.com"} }

func (o Options) withDefaults() Options {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.PlaybookDir == "" {
		o.PlaybookDir = "playbooks"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.User == "" {
		o.User = "alice@contoso.com"
	}
	if o.Protected == nil {
		o.Protected = []string{BreakGlass}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Run plays one scenario (the risky user by default) on a fresh sandbox. It
// returns an error saying why when the playbook is disabled, its steps did not
// all complete within the timeout, the tenant does not show their effect, or
// the audit chain does not verify.
func Run(ctx context.Context, o Options) (Result, error) {
	sc, err := lookup(o.Scenario)
	if err != nil {
		return Result{}, err
	}
	return run(ctx, o.withDefaults(), sc)
}

// RunAll plays every scenario in turn, each on a fresh sandbox (tenant, NATS
// store, engine), then prints a summary table. It returns an error naming the
// scenarios that did not pass.
func RunAll(ctx context.Context, o Options) ([]Result, error) {
	o = o.withDefaults()
	var results []Result
	for i, sc := range scenarios() {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			fmt.Fprintln(o.Out)
		}
		fmt.Fprintf(o.Out, "=== Scenario %s (playbook %s): %s\n", sc.name, sc.playbook, sc.attack)
		so := o
		if o.DataDir != "" {
			so.DataDir = filepath.Join(o.DataDir, sc.name)
		}
		res, err := run(ctx, so, sc)
		res.Scenario, res.Playbook, res.Err = sc.name, sc.playbook, err
		if err != nil {
			fmt.Fprintf(o.Out, "Scenario %s failed: %v\n", sc.name, err)
		}
		results = append(results, res)
	}
	fmt.Fprintln(o.Out)
	printSummary(o.Out, results)
	var bad []string
	for _, r := range results {
		if r.Err != nil {
			bad = append(bad, fmt.Sprintf("%s (%s)", r.Scenario, outcome(r)))
		}
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("demo: stopped after %d of %d scenarios: %w", len(results), len(scenarios()), err)
	}
	if len(bad) > 0 {
		return results, fmt.Errorf("demo: %d of %d scenarios did not pass: %s", len(bad), len(results), strings.Join(bad, ", "))
	}
	return results, nil
}

// outcome is a result's one-word verdict for the summary.
func outcome(r Result) string {
	switch {
	case errors.Is(r.Err, ErrPlaybookDisabled):
		return "disabled"
	case r.Err != nil:
		return "failed"
	case len(r.Pending) > 0:
		return fmt.Sprintf("contained, %d awaiting approval", len(r.Pending))
	}
	return "contained"
}

func printSummary(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPLAYBOOK\tOUTCOME\tFIRST ACTION")
	for _, r := range results {
		first := "-"
		if r.FirstAction > 0 {
			first = fmt.Sprintf("%.2fs", r.FirstAction.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Scenario, r.Playbook, outcome(r), first)
	}
	_ = tw.Flush()
}

// stepState follows one playbook step through the audit trail.
type stepState struct {
	step     playbook.Step
	pending  *audit.Record
	final    *audit.Record
	approved bool // the demo sent its approval
}

func run(ctx context.Context, o Options, sc scenario) (Result, error) {
	res := Result{Scenario: sc.name, Playbook: sc.playbook}
	log := o.Logger
	set, err := playbook.LoadDir(o.PlaybookDir, playbook.LoadOptions{VerifiedDomains: demoDomains(), BaseDir: o.PlaybookDir, Logger: log})
	if err != nil {
		return res, fmt.Errorf("demo: playbooks in %s: %w", o.PlaybookDir, err)
	}
	pb, ok := set.Lookup(sc.playbook)
	if !ok {
		return res, fmt.Errorf("demo: scenario %s: no playbook %q in %s", sc.name, sc.playbook, o.PlaybookDir)
	}
	if !pb.Enabled {
		return res, fmt.Errorf("demo: scenario %s: %w: playbook %q is switched off (enabled: false in %s); enable it to play this scenario",
			sc.name, ErrPlaybookDisabled, pb.Name, pb.File)
	}
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	dataDir := o.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "responder-demo-")
		if err != nil {
			return res, fmt.Errorf("demo: temporary directory: %w", err)
		}
		defer os.RemoveAll(d)
		dataDir = d
	}

	tenant, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, Logger: log})
	if err != nil {
		return res, fmt.Errorf("demo: emulated tenant: %w", err)
	}
	defer tenant.Close()
	// The sandbox organisation's audit subscriptions run from an earlier start:
	// Microsoft lists no content created before a start, and a scenario may act
	// before the engine's first poll would have started them.
	if err := tenant.StartSubscription(m365sim.ContentTypes()...); err != nil {
		return res, fmt.Errorf("demo: emulated tenant: %w", err)
	}
	if o.Prepare != nil {
		o.Prepare(tenant)
	}
	info := tenant.Info()

	start := time.Now()
	tl := &timeline{w: o.Out, start: start}
	events := &eventLog{changed: make(chan struct{})}
	sources := triggerSources(pb)
	cfg := engine.Config{
		Bus: bus.Config{StoreDir: dataDir, Port: -1},
		Credentials: m365.Credentials{
			TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL,
			HTTPClient: tenant.HTTPClient(),
		},
		PlaybookDir:     o.PlaybookDir,
		VerifiedDomains: demoDomains(),
		Protected:       actions.Protected{Users: o.Protected},
		// Only the feeds the playbook listens to: the scenario stays about it.
		Feeds: feedsFor(sources),
		// The emulator runs without its budgets here: poll as fast as the demo needs.
		IdentityProtectionBudget: feeds.NewTenantBudget(50, time.Second),
		RiskInterval:             100 * time.Millisecond,
		FeedInterval:             200 * time.Millisecond,
		PageGap:                  10 * time.Millisecond,
		RetryBase:                100 * time.Millisecond,
		RetryMax:                 2 * time.Second,
		Logger:                   log,
		OnEvent: func(e event.Envelope) {
			tl.event(e)
			events.add(e)
		},
	}
	if o.Engine != nil {
		cfg = o.Engine(cfg)
	}
	eng, err := engine.New(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer eng.Close()
	fmt.Fprintf(o.Out, "Responder demo: emulated tenant %s at %s, embedded NATS at %s\n", info.TenantID, tenant.URL(), eng.Bus().ClientURL())
	fmt.Fprintf(o.Out, "Playbooks: %s\n", playbookNames(eng))
	if sc.name != defaultScenario {
		fmt.Fprintf(o.Out, "Scenario %s exercises playbook %s and waits for: %s\n", sc.name, pb.Name, expectation(pb, o.Approve))
	}

	if o.Console != nil {
		done, err := o.Console(eng, tenant)
		if err != nil {
			return res, err
		}
		defer done()
	}
	engineCtx := ctx
	if o.Hold != nil {
		engineCtx = outer // the engine outlives the scenario's timeout
	}
	runCtx, stopEngine := context.WithCancel(engineCtx)
	engineDone := make(chan error, 1)
	go func() { engineDone <- eng.Run(runCtx) }()
	defer func() {
		stopEngine()
		<-engineDone
	}()

	// Watch the audit trail as it is written.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	records := make(chan audit.Record, 64)
	watchErr := make(chan error, 1)
	go func() { watchErr <- watch(watchCtx, eng.Bus().JS, records) }()

	victim, ok := tenant.User(o.User)
	if !ok {
		return res, fmt.Errorf("demo: seeded user %s not found in the emulated tenant", o.User)
	}
	// The attack goroutine owns facts until it has ended.
	var facts Attack
	atk := &attacker{tenant: tenant, victim: victim, pb: pb, sources: sources, protected: o.Protected, tl: tl, events: events, facts: &facts}
	attackStart := time.Now()
	attackCtx, stopAttack := context.WithCancel(ctx)
	defer stopAttack()
	attackDone := make(chan error, 1)
	go func() { attackDone <- sc.play(attackCtx, atk) }()
	attackRunning := true
	defer func() {
		if attackRunning {
			stopAttack()
			<-attackDone
		}
	}()

	steps := make([]*stepState, len(pb.Steps))
	for i, s := range pb.Steps {
		steps[i] = &stepState{step: s}
	}
	var problems []string
	matched := false
wait:
	for !settled(steps, o.Approve) || attackRunning {
		select {
		case <-ctx.Done():
			break wait
		case err := <-attackDone:
			attackRunning = false
			res.Attack = facts
			if err != nil {
				problems = append(problems, "attack: "+err.Error())
				break wait
			}
		case err := <-watchErr:
			if err != nil {
				return res, fmt.Errorf("demo: reading the audit trail: %w", err)
			}
			break wait
		case r := <-records:
			res.Records = append(res.Records, r)
			tl.record(r)
			if r.Playbook != pb.Name {
				continue
			}
			if r.Outcome == audit.Matched {
				matched = true
				continue
			}
			st := stepFor(steps, r.Action)
			if st == nil {
				continue
			}
			switch {
			case r.Outcome.Final():
				if st.final == nil {
					st.final = &r
					if r.Outcome == audit.Succeeded && res.FirstAction == 0 {
						res.FirstAction = time.Since(attackStart)
					}
				}
			case r.Outcome == audit.PendingApproval && st.pending == nil:
				st.pending = &r
				if o.Approve && !st.approved {
					st.approved = true
					if err := approveAsAdmin(ctx, eng, dataDir, r, tl); err != nil {
						problems = append(problems, fmt.Sprintf("approving %s: %v", r.Action, err))
						break wait
					}
				}
			}
		}
	}
	res.Elapsed = time.Since(start)
	stopWatch()
	if attackRunning {
		stopAttack()
		if err := <-attackDone; err != nil && !errors.Is(err, context.Canceled) {
			problems = append(problems, "attack: "+err.Error())
		}
		attackRunning = false
		res.Attack = facts
	}
	res.User, _ = tenant.User(victim.ID)
	res.Rules = tenant.MessageRules(victim.ID)
	res.NamedLocations = tenant.NamedLocations()
	res.Machines, res.Indicators, res.SenderBlocks = tenant.Machines(), tenant.Indicators(), tenant.TABLSenders()

	vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer vcancel()
	v, err := audit.Verify(vctx, eng.Bus().JS)
	if err != nil {
		return res, fmt.Errorf("demo: audit verify: %w", err)
	}
	res.Verify = v

	fmt.Fprintf(o.Out, "\nTenant after: %s accountEnabled=%t, sign-in sessions revoked %d time(s)\n",
		res.User.UserPrincipalName, res.User.AccountEnabled, res.User.RevokeCount)
	var blocked []string // steps not requested because an earlier one waits
	waiting := false
	for _, st := range steps {
		a := string(st.step.Action)
		switch {
		case waiting:
			blocked = append(blocked, a)
			continue
		case st.final == nil && st.pending != nil && !o.Approve:
			waiting = true
			res.Pending = append(res.Pending, *st.pending)
			fmt.Fprintf(o.Out, "Waiting for approval: %s %s (request %s)%s\n", a, targetOf(*st.pending), st.pending.RequestID, approveHint(o.Approve))
			continue
		case st.final == nil:
			problems = append(problems, a+" did not finish")
		case st.final.Outcome != audit.Succeeded:
			problems = append(problems, fmt.Sprintf("%s ended %s: %s", a, st.final.Outcome, st.final.Detail))
		}
		facts, probs := checkTenant(tenant, victim, res.Attack, st)
		for _, f := range facts {
			fmt.Fprintf(o.Out, "  %s\n", f)
		}
		problems = append(problems, probs...)
	}
	if len(blocked) > 0 {
		fmt.Fprintf(o.Out, "Not yet requested (after the approval): %s\n", strings.Join(blocked, ", "))
	}
	if !v.OK {
		problems = append(problems, "audit chain broken: "+v.Reason)
	} else {
		fmt.Fprintf(o.Out, "Audit chain: %d records, verified.\n", v.Records)
	}
	if ctx.Err() != nil && !settled(steps, o.Approve) {
		problems = append(problems, diagnose(pb, sources, events.count(), matched)...)
		problems = append(problems, fmt.Sprintf("timed out after %s", o.Timeout))
	}
	if len(problems) > 0 {
		if sc.name == defaultScenario {
			return res, errors.New("demo: containment failed: " + strings.Join(problems, "; "))
		}
		return res, fmt.Errorf("demo: scenario %s: containment failed: %s", sc.name, strings.Join(problems, "; "))
	}
	res.Contained = true
	var waits []string
	for _, p := range res.Pending {
		waits = append(waits, p.Action)
	}
	if len(waits) > 0 {
		fmt.Fprintf(o.Out, "Contained %s in %.2fs; %s waits for approval.\n", subjects(steps, tenant), res.Elapsed.Seconds(), strings.Join(waits, ", "))
	} else {
		fmt.Fprintf(o.Out, "Contained %s in %.2fs.\n", subjects(steps, tenant), res.Elapsed.Seconds())
	}
	if o.Hold != nil {
		return res, o.Hold(outer, eng, tenant, res)
	}
	return res, nil
}

// settled reports whether every step has ended, up to the first one that waits
// for approval when the demo does not approve.
func settled(steps []*stepState, approve bool) bool {
	for _, st := range steps {
		if st.final != nil {
			continue
		}
		return st.pending != nil && !approve
	}
	return true
}

func stepFor(steps []*stepState, action string) *stepState {
	for _, st := range steps {
		if string(st.step.Action) == action {
			return st
		}
	}
	return nil
}

// subjects names what the completed steps acted on, in order (users by UPN).
func subjects(steps []*stepState, tenant *m365sim.Tenant) string {
	var out []string
	seen := map[string]bool{}
	for _, st := range steps {
		if st.final == nil {
			continue
		}
		t := targetOf(*st.final)
		if u, ok := tenant.User(st.final.Target["user"]); ok {
			t = u.UserPrincipalName
		}
		if t != "" && !seen[strings.ToLower(t)] {
			seen[strings.ToLower(t)] = true
			out = append(out, t)
		}
	}
	return strings.Join(out, " and ")
}

func targetOf(r audit.Record) string {
	for _, k := range []string{"user", "ip", "message_id", "device", "file", "url", "domain", "sender"} {
		if v := r.Target[k]; v != "" {
			return v
		}
	}
	return ""
}

func approveHint(approve bool) string {
	if approve {
		return ""
	}
	return "; run the demo with --approve to approve it as the local administrator"
}

// expectation says what a scenario waits for: each step, and which wait for
// approval.
func expectation(pb *playbook.Playbook, approve bool) string {
	var parts []string
	for _, s := range pb.Steps {
		p := string(s.Action)
		if s.Approval == playbook.ApprovalRequired {
			if approve {
				p += " (after the demo approves it)"
			} else {
				p += " (pending approval)"
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// triggerSources are the event sources a playbook listens to (nil: any).
func triggerSources(pb *playbook.Playbook) map[event.Source]bool {
	tr := pb.Trigger
	if tr.Source == "" {
		return nil
	}
	out := map[event.Source]bool{tr.Source: true}
	if th := tr.Threshold; th != nil && th.Then != nil && th.Then.Source != "" {
		out[th.Then.Source] = true
	}
	return out
}

// feedsFor are the engine feeds that deliver those sources.
func feedsFor(sources map[event.Source]bool) []string {
	if sources == nil {
		return nil // every feed
	}
	var out []string
	for _, f := range []struct {
		src  event.Source
		feed string
	}{
		{event.SourceAudit, engine.FeedManagement},
		{event.SourceSignIn, engine.FeedSignIns},
		{event.SourceRiskDetection, engine.FeedRiskDetections},
		{event.SourceRiskyUser, engine.FeedRiskyUsers},
		{event.SourceAlert, engine.FeedAlerts},
	} {
		if sources[f.src] {
			out = append(out, f.feed)
		}
	}
	return out
}

// diagnose says where a scenario that timed out got stuck.
func diagnose(pb *playbook.Playbook, sources map[event.Source]bool, events int, matched bool) []string {
	switch {
	case events == 0:
		names := feedsFor(sources)
		if len(names) == 0 {
			names = engine.AllFeeds
		}
		return []string{fmt.Sprintf("no event arrived from the %s feed(s)", strings.Join(names, ", "))}
	case !matched:
		return []string{fmt.Sprintf("playbook %s did not fire on the %d event(s) that arrived", pb.Name, events)}
	}
	return nil
}

// approveAsAdmin approves a pending step, signed with the local administrator
// key of the data directory (what `responder approve` does on that machine).
func approveAsAdmin(ctx context.Context, eng *engine.Engine, dataDir string, r audit.Record, tl *timeline) error {
	kp, err := analyst.LoadDefaultKey(dataDir)
	if err != nil {
		return err
	}
	tl.line(fmt.Sprintf("approve      the local administrator approves %s %s (request %s)", r.Action, targetOf(r), short(r.RequestID)))
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := approval.Send(actx, eng.Bus().NC, eng.Tenant(), approval.Command{
		Op: approval.OpApprove, RequestID: r.RequestID, Reason: "demo: approved to show the whole flow",
		By: audit.Actor{Kind: "analyst", Name: analyst.LocalAdminName},
	}, kp)
	if err != nil {
		return err
	}
	if !rep.OK {
		return errors.New(rep.Error)
	}
	return nil
}

func playbookNames(e *engine.Engine) string {
	var names []string
	for _, p := range e.Playbooks().Playbooks() {
		if p.Enabled {
			names = append(names, p.Name)
		}
	}
	return strings.Join(names, ", ")
}

// watch streams new audit records (an ordered consumer from the start of the stream).
func watch(ctx context.Context, js jetstream.JetStream, out chan<- audit.Record) error {
	cons, err := js.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		var r audit.Record
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			return fmt.Errorf("undecodable audit record: %w", err)
		}
		select {
		case out <- r:
		case <-ctx.Done():
			return nil
		}
	}
}

// eventLog keeps the events the feeds published, for attacks that go on once
// the engine has seen their first part.
type eventLog struct {
	mu      sync.Mutex
	events  []event.Envelope
	changed chan struct{} // closed and replaced on each event
}

func (l *eventLog) add(e event.Envelope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// wait returns once n events satisfy pred, or with the count so far when ctx
// ends first.
func (l *eventLog) wait(ctx context.Context, n int, pred func(event.Envelope) bool) (int, error) {
	for {
		l.mu.Lock()
		got := 0
		for _, e := range l.events {
			if pred(e) {
				got++
			}
		}
		ch := l.changed
		l.mu.Unlock()
		if got >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-ch:
		}
	}
}

type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (t *timeline) stamp() string { return fmt.Sprintf("%+7.2fs", time.Since(t.start).Seconds()) }

// line prints one timeline line after the time stamp.
func (t *timeline) line(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s  %s\n", t.stamp(), s)
}

func (t *timeline) attack(s string) { t.line("attack       " + s) }

func (t *timeline) event(e event.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s  detected     %s %s for %s from %s [event %s]\n", t.stamp(), e.Source, e.Kind, orDash(e.User), orDash(e.IP), e.ID)
}

func (t *timeline) record(r audit.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	who := r.Target["user"]
	if who == "" {
		who = r.Target["ip"]
	}
	what := r.Action
	if r.Outcome == audit.Matched {
		what = "playbook " + r.Playbook
	}
	line := fmt.Sprintf("%s  %-12s %s %s", t.stamp(), r.Outcome, what, who)
	if r.Detail != "" && r.Outcome != audit.Accepted {
		line += ": " + r.Detail
	}
	if r.ErrorCode != "" {
		line += " [" + r.ErrorCode + "]"
	}
	fmt.Fprintf(t.w, "%s [audit #%d %s]\n", line, r.Seq, short(r.ID))
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
