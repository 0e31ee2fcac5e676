package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// Options configure one demo run.
type Options struct {
	Out         io.Writer // the timeline (default io.Discard)
	DataDir     string    // embedded NATS store; "" = a fresh temporary directory
	PlaybookDir string    // default "playbooks"
	Timeout     time.Duration
	Logger      *slog.Logger
	// User is the seeded user the attack targets (default alice@contoso.com).
	User string
	// Protected identities (default: the seeded break-glass account).
	Protected []string
	// Prepare may change the tenant before the attack (faults, permissions).
	Prepare func(*m365sim.Tenant)
	// KeepTenant leaves the tenant and engine running until ctx ends (serve --sandbox).
	Engine func(engine.Config) engine.Config
}

// Result is what a run observed.
type Result struct {
	User      m365sim.User // the target after the run
	Records   []audit.Record
	Verify    audit.VerifyResult
	Contained bool
	Elapsed   time.Duration
}

// BreakGlass is the seeded emergency-access account, protected by default.
const BreakGlass = "breakglass@contoso.com"

// Run plays the default scenario. It returns an error saying why when the user was
// not contained or the audit chain does not verify.
func Run(ctx context.Context, o Options) (Result, error) {
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
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	dataDir := o.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "responder-demo-")
		if err != nil {
			return Result{}, fmt.Errorf("demo: temporary directory: %w", err)
		}
		defer os.RemoveAll(d)
		dataDir = d
	}

	tenant, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, Logger: log})
	if err != nil {
		return Result{}, fmt.Errorf("demo: emulated tenant: %w", err)
	}
	defer tenant.Close()
	if o.Prepare != nil {
		o.Prepare(tenant)
	}
	info := tenant.Info()

	start := time.Now()
	tl := &timeline{w: o.Out, start: start}
	cfg := engine.Config{
		Bus: bus.Config{StoreDir: dataDir, Port: -1},
		Credentials: m365.Credentials{
			TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL,
			HTTPClient: tenant.HTTPClient(),
		},
		PlaybookDir: o.PlaybookDir,
		Protected:   actions.Protected{Users: o.Protected},
		Feeds:       []string{engine.FeedRiskDetections},
		// The emulator runs without its budgets here: poll as fast as the demo needs.
		IdentityProtectionBudget: feeds.NewTenantBudget(50, time.Second),
		RiskInterval:             100 * time.Millisecond,
		PageGap:                  10 * time.Millisecond,
		RetryBase:                100 * time.Millisecond,
		RetryMax:                 2 * time.Second,
		Logger:                   log,
		OnEvent:                  tl.event,
	}
	if o.Engine != nil {
		cfg = o.Engine(cfg)
	}
	eng, err := engine.New(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer eng.Close()
	fmt.Fprintf(o.Out, "Responder demo: emulated tenant %s at %s, embedded NATS at %s\n", info.TenantID, tenant.URL(), eng.Bus().ClientURL())
	fmt.Fprintf(o.Out, "Playbooks: %s\n", playbookNames(eng))

	runCtx, stopEngine := context.WithCancel(ctx)
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
		return Result{}, fmt.Errorf("demo: seeded user %s not found in the emulated tenant", o.User)
	}
	det := tenant.InjectRiskDetection(m365sim.RiskDetection{
		UserID: victim.ID, UserPrincipalName: victim.UserPrincipalName, UserDisplayName: victim.DisplayName,
		RiskEventType: "anonymizedIPAddress", RiskLevel: "high", IPAddress: "185.220.101.47",
	})
	fmt.Fprintf(o.Out, "%s  attack       the tenant raises a high-risk detection %s (%s) for %s from %s\n",
		tl.stamp(), det.ID, det.RiskEventType, victim.UserPrincipalName, det.IPAddress)

	var res Result
	final := map[string]audit.Record{} // action -> final record for the victim
	want := []string{string(actions.DisableUser), string(actions.RevokeSessions)}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err := <-watchErr:
			if err != nil {
				return res, fmt.Errorf("demo: reading the audit trail: %w", err)
			}
			break wait
		case r := <-records:
			res.Records = append(res.Records, r)
			tl.record(r)
			if r.Outcome.Final() && strings.EqualFold(r.Target["user"], victim.UserPrincipalName) {
				final[r.Action] = r
			}
			if len(final) >= len(want) {
				break wait
			}
		}
	}
	res.Elapsed = time.Since(start)
	stopWatch()
	res.User, _ = tenant.User(victim.ID)

	vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer vcancel()
	v, err := audit.Verify(vctx, eng.Bus().JS)
	if err != nil {
		return res, fmt.Errorf("demo: audit verify: %w", err)
	}
	res.Verify = v

	fmt.Fprintf(o.Out, "\nTenant after: %s accountEnabled=%t, sign-in sessions revoked %d time(s)\n",
		res.User.UserPrincipalName, res.User.AccountEnabled, res.User.RevokeCount)
	var problems []string
	for _, a := range want {
		r, ok := final[a]
		switch {
		case !ok:
			problems = append(problems, a+" did not finish")
		case r.Outcome != audit.Succeeded:
			problems = append(problems, fmt.Sprintf("%s ended %s: %s", a, r.Outcome, r.Detail))
		}
	}
	if res.User.AccountEnabled {
		problems = append(problems, "the account is still enabled")
	}
	if res.User.RevokeCount == 0 {
		problems = append(problems, "sign-in sessions were not revoked")
	}
	if !v.OK {
		problems = append(problems, "audit chain broken: "+v.Reason)
	} else {
		fmt.Fprintf(o.Out, "Audit chain: %d records, verified.\n", v.Records)
	}
	if ctx.Err() != nil && len(final) < len(want) {
		problems = append(problems, fmt.Sprintf("timed out after %s", o.Timeout))
	}
	if len(problems) > 0 {
		return res, errors.New("demo: containment failed: " + strings.Join(problems, "; "))
	}
	res.Contained = true
	fmt.Fprintf(o.Out, "Contained %s in %.2fs.\n", res.User.UserPrincipalName, res.Elapsed.Seconds())
	return res, nil
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

type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (t *timeline) stamp() string { return fmt.Sprintf("%+7.2fs", time.Since(t.start).Seconds()) }

func (t *timeline) event(e event.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s  detected     %s %s for %s from %s [event %s]\n", t.stamp(), e.Source, e.Kind, e.User, orDash(e.IP), e.ID)
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
