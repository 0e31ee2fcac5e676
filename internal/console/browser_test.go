package console_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/console"
	"github.com/responder-sec/responder/internal/demo"
	"github.com/responder-sec/responder/internal/m365sim"
)

// xss is a reason and a UPN that must render as text, never run.
const (
	xssReason = `<script>window.__xss=1</script> risk dismissed <img src=x onerror="window.__xss=2">`
	xssUPN    = `<script>window.__xss=3</script>mallory@contoso.com`
	xssOID    = "3a11c0de-0000-4000-8000-0000000000aa"
)

// browser drives one headless Chromium for every case (Debian's chromium;
// .ci/run installs it). On failure it saves a screenshot of the page; with
// RESPONDER_CONSOLE_SCREENSHOTS=DIR it saves one of every page it names.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot directory of every page ("" none)
	fail string // where a failure's screenshot goes
}

func (b *browser) do(step string, acts ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, acts...); err != nil {
		b.failShot(step)
		b.t.Fatalf("%s: %v", step, err)
	}
}

// submit clicks a control that loads a new page, waits for that page's
// load event, then for it to hold waitFor.
func (b *browser) submit(step, click, waitFor string, before ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	acts := append(before,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(click))))
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(waitFor)))
	b.do(step, acts...)
}

func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

func (b *browser) eval(step, js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.failShot(step)
		b.t.Fatalf("%s: %v", step, err)
	}
	return v
}

func (b *browser) text(step, sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.failShot(step)
		b.t.Fatalf("%s: %v", step, err)
	}
	return v
}

func (b *browser) failShot(step string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot after %q failed: %v", step, err)
		return
	}
	_ = os.MkdirAll(b.fail, 0o755)
	p := filepath.Join(b.fail, "failure-"+strings.NewReplacer(" ", "-", "/", "-").Replace(step)+".png")
	if os.WriteFile(p, png, 0o644) == nil {
		b.t.Logf("screenshot of the failing page: %s", p)
	}
}

// snap saves a screenshot of the current page when asked to.
func (b *browser) snap(name string) {
	if b.shot == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		_ = os.WriteFile(filepath.Join(b.shot, name+".png"), png, 0o644)
	}
}

func (b *browser) failf(step, format string, a ...any) {
	b.t.Helper()
	b.failShot(step)
	b.t.Fatalf(step+": "+format, a...)
}

// signIn goes through the console's sign-in and the tenant's account
// picker as upn, and waits for the page after it.
func (b *browser) signIn(upn, waitFor string) {
	b.t.Helper()
	b.do("open the console as "+upn, chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	b.snap("signin")
	b.do("sign in as "+upn, chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS(`[id="user-`+upn+`"]`)))
	b.snap("tenant-account-picker")
	b.do("pick "+upn, chromedp.Click(chromedp.CSS(`[id="user-`+upn+`"]`)), chromedp.WaitVisible(chromedp.CSS(waitFor)))
}

func (b *browser) signOut() {
	b.t.Helper()
	b.submit("sign out", `form[action="/logout"] button`, "#signin")
}

// waitRecord waits for the audit record of requestID with outcome (any
// request when requestID is ""), reading the stream as it is written.
func waitRecord(ctx context.Context, js jetstream.JetStream, match func(audit.Record) bool) (audit.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return audit.Record{}, err
	}
	for {
		batch, err := cons.Fetch(100, jetstream.FetchContext(ctx))
		if err != nil {
			return audit.Record{}, err
		}
		for m := range batch.Messages() {
			var r audit.Record
			if json.Unmarshal(m.Data(), &r) == nil && match(r) {
				return r, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return audit.Record{}, err
		}
		if ctx.Err() != nil {
			return audit.Record{}, ctx.Err()
		}
	}
}

// spki is the base64 SHA-256 of the tenant's TLS key, which Chromium is told
// to accept (--ignore-certificate-errors-spki-list: that key only).
func spki(t *testing.T, tenant *m365sim.Tenant) string {
	u, _ := url.Parse(tenant.URL())
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: tenant.CertPool()})
	if err != nil {
		t.Fatalf("tenant TLS: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestConsoleInBrowser plays the risky-user scenario with the console on,
// then, in one Chromium: approver 1 approves the pending confirmation (1 of
// 2), approver 2 approves it, the action runs and the audit page shows it;
// the disable is undone from its request page; an analyst's own request
// cannot be approved by them; a reason and a UPN holding <script> render as
// text; a POST without the CSRF token is refused and audited; someone
// outside the analysts file gets the 403 page.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser through a whole scenario: the full run has it")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	addr, err := console.FreeLoopbackAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	o := demo.Options{DataDir: t.TempDir(), PlaybookDir: "../../playbooks", Timeout: 90 * time.Second,
		Prepare: func(tn *m365sim.Tenant) {
			// Someone Entra signs in whom the analysts file does not list,
			// with markup in their name.
			tn.AddUser(m365sim.User{ID: xssOID, UserPrincipalName: xssUPN, DisplayName: "Mallory <b>bold</b>", AccountEnabled: true})
		}}
	ran := false
	o, err = demo.WithConsole(o, addr, func(ctx context.Context, r demo.ConsoleRun) error {
		ran = true
		t.Logf("scenario played in %s; browser cases start", time.Since(started).Round(time.Millisecond))
		browse(ctx, t, chromium, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := demo.Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("the console cases did not run")
	}
	t.Logf("wall time with the scenario: %s", time.Since(started).Round(time.Millisecond))
}

func browse(ctx context.Context, t *testing.T, chromium string, r demo.ConsoleRun) {
	start := time.Now()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki(t, r.Tenant)),
	)
	if os.Getenv("RESPONDER_CONSOLE_DEBUG") != "" {
		opts = append(opts, chromedp.CombinedOutput(os.Stderr))
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The first call starts the browser, which lives as long as the context
	// of that call: bctx, not a step's timeout.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: bctx, base: strings.TrimSuffix(r.URL, "/"), shot: os.Getenv("RESPONDER_CONSOLE_SCREENSHOTS"),
		fail: filepath.Join(os.TempDir(), "responder-console-failures")}
	if b.shot != "" {
		_ = os.MkdirAll(b.shot, 0o755)
	}
	js := r.Engine.Bus().JS

	var pending string
	for _, p := range r.Result.Pending {
		if p.Action == "confirm_compromised" {
			pending = p.RequestID
		}
	}
	if pending == "" {
		t.Fatalf("the scenario left no confirm_compromised waiting: %+v", r.Result.Pending)
	}
	card := "#pending-" + pending

	// Approver 1 sees the pending approval the scenario produced and approves.
	b.signIn("carol@contoso.com", card)
	b.snap("approvals")
	if got := b.text("pending card", card+" .count"); !strings.HasPrefix(got, "0 of 2") {
		b.failf("pending card", "approvals so far %q, want 0 of 2", got)
	}
	b.submit("approve as carol", card+" button.approve", "#flash")
	if got := b.text("flash", "#flash"); !strings.Contains(got, "1 of 2") {
		b.failf("approve as carol", "flash %q, want 1 of 2", got)
	}
	// A second vote by the same person does not count.
	b.submit("approve again as carol", card+" button.approve", "#flash")
	if got := b.text("flash", "#flash"); !strings.Contains(got, "Refused") {
		b.failf("approve again as carol", "flash %q, want a refusal", got)
	}
	b.signOut()

	// Approver 2 approves: the action runs, and the audit page shows it.
	b.signIn("bob@contoso.com", card)
	b.submit("approve as bob", card+" button.approve", "#flash")
	if got := b.text("flash", "#flash"); !strings.Contains(got, "all approvals are in") {
		b.failf("approve as bob", "flash %q", got)
	}
	done, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.RequestID == pending && (rec.Outcome == audit.Succeeded || rec.Outcome == audit.Failed)
	})
	if err != nil || done.Outcome != audit.Succeeded {
		b.failf("confirm_compromised runs", "record %+v, %v", done, err)
	}
	approved, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.RequestID == pending && rec.Outcome == audit.Approved
	})
	if err != nil || approved.Actor.EntraOID != m365sim.BobID || approved.Actor.UPN != "bob@contoso.com" || approved.Actor.TokenID == "" {
		b.failf("approved record", "the approval is not attributed to bob's Entra identity and sign-in: %+v, %v", approved.Actor, err)
	}
	b.do("audit page", chromedp.Navigate(b.base+"/audit?since=1h&request="+pending), chromedp.WaitVisible(chromedp.CSS("#records")))
	b.snap("audit")
	rows := b.text("audit rows", "#records tbody")
	if !strings.Contains(rows, "succeeded") || !strings.Contains(rows, "confirm_compromised") || !strings.Contains(rows, "bob") {
		b.failf("audit page", "rows do not show the approved action: %q", rows)
	}
	if chain := b.text("chain", "#chain"); !strings.Contains(chain, "verified") || strings.Contains(chain, "NOT") {
		b.failf("audit page", "chain state %q", chain)
	}

	// Undo the disable from its request page: Alice is enabled again.
	var disabled string
	for _, rec := range r.Result.Records {
		if rec.Action == "disable_user" && rec.Outcome == audit.Succeeded {
			disabled = rec.RequestID
		}
	}
	if u, _ := r.Tenant.User("alice@contoso.com"); disabled == "" || u.AccountEnabled {
		t.Fatalf("the scenario did not disable alice (request %q, enabled %t)", disabled, u.AccountEnabled)
	}
	b.do("request page", chromedp.Navigate(b.base+"/requests/"+disabled), chromedp.WaitVisible(chromedp.CSS("#undo")))
	b.snap("request")
	if ids := b.text("microsoft request ids", ".msids"); strings.TrimSpace(ids) == "" {
		b.failf("request page", "no Microsoft request ids")
	}
	b.submit("undo", "#undo", "#flash", chromedp.SetValue(chromedp.CSS(`#undo-form input[name="reason"]`), "false positive: travel was real"))
	if got := b.text("flash", "#flash"); !strings.Contains(got, "succeeded") {
		b.failf("undo", "flash %q", got)
	}
	if u, _ := r.Tenant.User("alice@contoso.com"); !u.AccountEnabled {
		b.failf("undo", "alice is still disabled in the tenant")
	}

	// Bob's own request waits for someone else: he cannot approve it. Its
	// reason holds markup, which renders as text.
	b.do("act page", chromedp.Navigate(b.base+"/act"), chromedp.WaitVisible(chromedp.CSS("#act-form")),
		chromedp.SetValue(chromedp.CSS(`#act-form select[name="action"]`), "dismiss_risk"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="target"]`), "alice@contoso.com"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="reason"]`), xssReason))
	b.submit("preview", "#preview-button", "#preview")
	b.snap("act-preview")
	if got := b.text("preview", "#preview h2"); !strings.Contains(got, "dry_run") {
		b.failf("dry-run preview", "preview %q", got)
	}
	b.submit("run for real", "#run", "#result")
	if got := b.text("result", "#result h2"); !strings.Contains(got, "pending_approval") {
		b.failf("run for real", "result %q, want pending_approval", got)
	}
	own, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.Action == "dismiss_risk" && rec.Outcome == audit.PendingApproval
	})
	if err != nil {
		b.failf("own request", "%v", err)
	}
	ownCard := "#pending-" + own.RequestID
	b.do("approvals with bob's own request", chromedp.Navigate(b.base+"/approvals"), chromedp.WaitVisible(chromedp.CSS(ownCard)))
	if got := b.text("reason", ownCard+" .reason"); got != xssReason {
		b.failf("reason rendered", "reason %q, want the markup as text", got)
	}
	b.submit("bob approves his own", ownCard+" button.approve", "#flash")
	if got := b.text("flash", "#flash"); !strings.Contains(got, "requester cannot approve") {
		b.failf("own approval", "flash %q, want the four-eyes refusal", got)
	}
	if _, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.RequestID == own.RequestID && rec.Outcome == audit.Rejected && rec.Actor.EntraOID == m365sim.BobID
	}); err != nil {
		b.failf("own approval audited", "%v", err)
	}

	// A POST without the CSRF token is refused, changes nothing, and is audited.
	status := b.eval("post without csrf", `fetch("/approvals/`+own.RequestID+`/approve", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "reason=forged"}).then(r => String(r.status))`)
	if status != "403" {
		b.failf("post without csrf", "status %s, want 403", status)
	}
	if _, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.Action == "console" && rec.Outcome == audit.Rejected && strings.Contains(rec.Detail, "CSRF") && rec.Actor.EntraOID == m365sim.BobID
	}); err != nil {
		b.failf("csrf refusal audited", "%v", err)
	}
	b.do("approvals after the forged post", chromedp.Navigate(b.base+"/approvals"), chromedp.WaitVisible(chromedp.CSS(ownCard)))
	if got := b.text("own card", ownCard+" .count"); !strings.HasPrefix(got, "0 of 1") {
		b.failf("forged post", "approvals %q: the forged POST counted", got)
	}
	if v := b.eval("xss", `String(window.__xss)`); v != "undefined" {
		b.failf("xss", "a script ran: window.__xss = %s", v)
	}

	// The other pages render.
	b.do("status page", chromedp.Navigate(b.base+"/status"), chromedp.WaitVisible(chromedp.CSS("#playbooks")))
	b.snap("status")
	if feeds := b.text("feeds", "#feeds tbody"); !strings.Contains(feeds, "risk_detections") {
		b.failf("status page", "feeds %q: the scenario's risk feed is missing", feeds)
	}
	b.do("act page", chromedp.Navigate(b.base+"/act"), chromedp.WaitVisible(chromedp.CSS("#act-form")))
	b.snap("act")
	// An action's own parameters, as the catalogue declares them: the dry
	// run carries them (scope all: "(any)" forwarding rule), and a line the
	// action does not declare is refused on the page, nothing sent.
	b.do("act with a parameter", chromedp.SetValue(chromedp.CSS(`#act-form select[name="action"]`), "delete_forward_rules"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="target"]`), "alice@contoso.com"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="reason"]`), "scope check"),
		chromedp.SetValue(chromedp.CSS(`#act-form textarea[name="params"]`), "scope=all"))
	b.submit("preview with a parameter", "#preview-button", "#preview")
	if got := b.text("preview with a parameter", "#preview .detail"); !strings.Contains(got, "(any)") {
		b.failf("preview with a parameter", "detail %q: scope=all did not reach the engine", got)
	}
	b.do("act with an undeclared parameter", chromedp.Navigate(b.base+"/act"), chromedp.WaitVisible(chromedp.CSS("#act-form")),
		chromedp.SetValue(chromedp.CSS(`#act-form select[name="action"]`), "delete_forward_rules"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="target"]`), "alice@contoso.com"),
		chromedp.SetValue(chromedp.CSS(`#act-form input[name="reason"]`), "bad param"),
		chromedp.SetValue(chromedp.CSS(`#act-form textarea[name="params"]`), "colour=red"))
	b.submit("undeclared parameter", "#preview-button", "#act-error")
	if got := b.text("undeclared parameter", "#act-error"); !strings.Contains(got, "no parameter") {
		b.failf("undeclared parameter", "error %q", got)
	}
	b.do("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(b.base+"/approvals"), chromedp.WaitVisible(chromedp.CSS(ownCard)))
	b.snap("approvals-phone")
	b.do("desktop width", chromedp.EmulateViewport(1280, 800))
	b.signOut()

	// Someone the analysts file does not list: the 403 page, their UPN as text.
	b.signIn(xssUPN, "#forbidden")
	b.snap("forbidden")
	if got := b.text("403", "#forbidden"); !strings.Contains(got, xssUPN) {
		b.failf("403 page", "text %q does not show the UPN as text", got)
	}
	if v := b.eval("xss", `String(window.__xss)`); v != "undefined" {
		b.failf("xss", "a script ran: window.__xss = %s", v)
	}
	b.do("403 on every page", chromedp.Navigate(b.base+"/approvals"), chromedp.WaitVisible(chromedp.CSS("#signin")))
	if _, err := waitRecord(ctx, js, func(rec audit.Record) bool {
		return rec.Action == "console" && rec.Outcome == audit.Rejected && rec.Actor.EntraOID == xssOID
	}); err != nil {
		b.failf("403 audited", "%v", err)
	}
	t.Logf("browser cases: %s", time.Since(start).Round(time.Millisecond))
}
