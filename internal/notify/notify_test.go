package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/clock/clocktest"
)

// claims is the state bucket of a real embedded NATS server.
func claims(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("bus.Open: %v", err)
	}
	t.Cleanup(b.Close)
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// receiver is the webhook's far end (a test double: the receiving service
// is not something Responder ships). Each request is answered by the next
// status in plan (200 once the plan is used up).
type receiver struct {
	srv *httptest.Server
	// secretPath is the part of the URL that is the credential.
	secretPath string

	mu     sync.Mutex
	plan   []int
	header http.Header // sent with non-2xx answers
	bodies [][]byte
	got    chan struct{}
}

func newReceiver(t *testing.T, plan ...int) *receiver {
	r := &receiver{secretPath: "/webhookb2/7f3c-SECRET-a91e/IncomingWebhook/deadbeefcafe", plan: plan, header: http.Header{}, got: make(chan struct{}, 64)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := http.StatusOK
		if len(r.plan) > 0 {
			status, r.plan = r.plan[0], r.plan[1:]
		}
		if req.URL.Path != r.secretPath || req.Header.Get("Content-Type") != "application/json" {
			status = http.StatusNotFound
		}
		r.bodies = append(r.bodies, b)
		if status != http.StatusOK {
			for k, v := range r.header {
				w.Header()[k] = v
			}
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.got <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + r.secretPath }

func (r *receiver) requests() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// hostile is an event whose text an attacker chose: a UPN and a reason with
// HTML, Markdown and Slack control sequences.
func hostile() Event {
	return Event{
		RequestID: "3f0c5b9e-8e8a-4c1e-9d0b-4f3a2f7d9c11",
		State:     audit.PendingApproval,
		Action:    "disable_user",
		Target:    map[string]string{"user": "<script>alert(1)</script>@contoso.com"},
		Requester: audit.Actor{Kind: "playbook", Name: "high-risk-user"},
		Reason:    "[click here](https://evil.example/phish) **urgent** <!channel> <@U123> <https://evil.example|ok>\n# heading",
		Playbook:  "high-risk-user",
		Detail:    "waiting for 2 approvals",
		Time:      time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC),
	}
}

const console = "https://responder.contoso.com:9464"

func newNotifier(t *testing.T, kv jetstream.KeyValue, hooks []Webhook, clk *clocktest.Fake, log *slog.Logger) *Notifier {
	t.Helper()
	n, err := New(Config{Webhooks: hooks, ConsoleURL: console, Claims: kv, Clock: clk, Logger: log,
		MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTeamsAdaptiveCardShapeAndEscaping(t *testing.T) {
	body, err := Payload(Teams, hostile(), console+"/requests/3f0c5b9e-8e8a-4c1e-9d0b-4f3a2f7d9c11")
	if err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			ContentURL  *string         `json:"contentUrl"`
			Content     json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || len(msg.Attachments) != 1 || msg.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("not a Teams Adaptive Card message: %s", body)
	}
	var card struct {
		Type, Version string
		Body          []struct {
			Type  string
			Text  string
			Facts []struct{ Title, Value string }
		}
		Actions []struct{ Type, Title, URL string }
	}
	if err := json.Unmarshal(msg.Attachments[0].Content, &card); err != nil {
		t.Fatal(err)
	}
	if card.Type != "AdaptiveCard" || card.Version != "1.4" || len(card.Actions) != 1 ||
		card.Actions[0].Type != "Action.OpenUrl" || card.Actions[0].URL != console+"/requests/3f0c5b9e-8e8a-4c1e-9d0b-4f3a2f7d9c11" {
		t.Fatalf("card: %+v", card)
	}
	facts := map[string]string{}
	for _, b := range card.Body {
		for _, f := range b.Facts {
			facts[f.Title] = f.Value
		}
	}
	for _, want := range []string{"On", "Requested by", "Why", "Playbook", "Detail", "Request"} {
		if facts[want] == "" {
			t.Errorf("fact %q missing: %v", want, facts)
		}
	}
	// Every Markdown or HTML metacharacter of the hostile text is escaped, and
	// the reason's line break cannot start a heading.
	for title, v := range facts {
		for i, r := range v {
			if strings.ContainsRune("[]()*<>#!_`", r) && (i == 0 || v[i-1] != '\\') {
				t.Errorf("fact %s: %q has an unescaped %q at %d", title, v, r, i)
			}
		}
		if strings.ContainsAny(v, "\n\r") {
			t.Errorf("fact %s keeps a line break: %q", title, v)
		}
	}
	if !strings.Contains(facts["On"], `\<script\>alert\(1\)\</script\>`) {
		t.Errorf("target not rendered as text: %q", facts["On"])
	}
}

func TestSlackMessageKeepsHostileTextPlain(t *testing.T) {
	body, err := Payload(Slack, hostile(), console+"/requests/x")
	if err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Text   string
		Blocks []struct {
			Type   string
			Text   *struct{ Type, Text string }
			Fields []struct{ Type, Text string }
		}
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(msg.Text, "<>") {
		t.Errorf("fallback text not escaped: %q", msg.Text)
	}
	var sawReason bool
	for _, b := range msg.Blocks {
		if b.Text != nil && b.Text.Type != "plain_text" {
			t.Errorf("block %s text is %s, not plain_text", b.Type, b.Text.Type)
		}
		for _, f := range b.Fields {
			if f.Type != "plain_text" {
				t.Errorf("field %q is %s, not plain_text", f.Text, f.Type)
			}
			sawReason = sawReason || strings.Contains(f.Text, "<!channel>")
		}
	}
	if !sawReason {
		t.Error("the reason is not shown as given")
	}
	if !bytes.Contains(body, []byte(`"url":"`+console+`/requests/x"`)) {
		t.Errorf("no link button: %s", body)
	}
}

func TestGenericJSON(t *testing.T) {
	ev := hostile()
	ev.State = audit.Failed
	ev.ErrorCode = "Request_ResourceNotFound"
	body, err := Payload(Generic, ev, "")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "responder.notification" || m["state"] != "failed" || m["request_id"] != ev.RequestID ||
		m["reason"] != ev.Reason || m["error_code"] != "Request_ResourceNotFound" {
		t.Errorf("generic payload: %v", m)
	}
}

// TestRetriesBackOffOnTheClockAndStop: 503, 429 with Retry-After, then 200:
// three posts, the waits 1 s (base) and 7 s (Retry-After), one notification.
func TestRetriesBackOffOnTheClockAndStop(t *testing.T) {
	kv := claims(t)
	rcv := newReceiver(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	rcv.header.Set("Retry-After", "7")
	clk := clocktest.New(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	n := newNotifier(t, kv, []Webhook{{Kind: Teams, URL: rcv.url()}}, clk, nil)
	done := make(chan []error, 1)
	go func() { done <- n.Send(t.Context(), hostile()) }()
	var waits []time.Duration
	for range 2 {
		d := <-clk.Armed
		waits = append(waits, d)
		clk.Advance(d)
	}
	if errs := <-done; len(errs) != 0 {
		t.Fatalf("send: %v", errs)
	}
	if got := len(rcv.requests()); got != 3 {
		t.Fatalf("%d posts, want 3", got)
	}
	if waits[0] != time.Second || waits[1] != 7*time.Second {
		t.Errorf("waits %v, want [1s 7s]", waits)
	}
}

// TestRetriesAreBounded: a receiver that always fails gets MaxAttempts posts;
// a refusal (404: the webhook was removed) gets one.
func TestRetriesAreBounded(t *testing.T) {
	kv := claims(t)
	failing := newReceiver(t, 500, 500, 500, 500, 500, 500, 500)
	clk := clocktest.New(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	n := newNotifier(t, kv, []Webhook{{Kind: Slack, URL: failing.url()}}, clk, nil)
	done := make(chan []error, 1)
	go func() { done <- n.Send(t.Context(), hostile()) }()
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if d := <-clk.Armed; d != want {
			t.Errorf("wait %v, want %v", d, want)
		}
		clk.Advance(30 * time.Second)
	}
	if errs := <-done; len(errs) != 1 || !strings.Contains(errs[0].Error(), "gave up after 4 attempts") {
		t.Fatalf("errors: %v", errs)
	}
	if got := len(failing.requests()); got != 4 {
		t.Fatalf("%d posts, want 4", got)
	}

	refused := newReceiver(t, http.StatusNotFound)
	n = newNotifier(t, kv, []Webhook{{Kind: Generic, URL: refused.url()}}, clk, nil)
	if errs := n.Send(t.Context(), hostile()); len(errs) != 1 {
		t.Fatalf("refusal: %v", errs)
	}
	if got := len(refused.requests()); got != 1 {
		t.Fatalf("refused: %d posts, want 1", got)
	}
}

// TestOneNotificationPerRequestAndState: the same state again (a retried
// record, another engine) posts nothing; the request's next state posts.
func TestOneNotificationPerRequestAndState(t *testing.T) {
	kv := claims(t)
	rcv := newReceiver(t)
	n := newNotifier(t, kv, []Webhook{{Kind: Generic, URL: rcv.url()}}, clocktest.New(time.Now()), nil)
	other := newNotifier(t, kv, []Webhook{{Kind: Generic, URL: rcv.url()}}, clocktest.New(time.Now()), nil)
	ev := hostile()
	for _, nn := range []*Notifier{n, n, other} {
		if errs := nn.Send(t.Context(), ev); len(errs) != 0 {
			t.Fatal(errs)
		}
	}
	ev.State = audit.Failed
	if errs := n.Send(t.Context(), ev); len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := len(rcv.requests()); got != 2 {
		t.Fatalf("%d posts, want 2 (pending once, failed once)", got)
	}
}

// TestWebhookURLNeverLogged: through refusals, retries and a receiver that is
// gone (a connection error names the URL it dialled), neither the log nor
// an error carries the webhook's secret path.
func TestWebhookURLNeverLogged(t *testing.T) {
	kv := claims(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	flaky := newReceiver(t, 502, 400)
	gone := newReceiver(t)
	goneURL := gone.url()
	gone.srv.Close()
	clk := clocktest.New(time.Now())
	n := newNotifier(t, kv, []Webhook{{Kind: Teams, URL: flaky.url()}, {Kind: Slack, URL: goneURL}}, clk, log)
	done := make(chan []error, 1)
	go func() { done <- n.Send(t.Context(), hostile()) }()
	go func() {
		for {
			select {
			case d := <-clk.Armed:
				clk.Advance(d)
			case <-t.Context().Done():
				return
			}
		}
	}()
	errs := <-done
	if len(errs) != 2 {
		t.Fatalf("errors: %v", errs)
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "deadbeef") {
			t.Errorf("error carries the webhook URL: %v", err)
		}
	}
	if strings.Contains(logs.String(), "SECRET") || strings.Contains(logs.String(), "deadbeef") {
		t.Errorf("log carries the webhook URL:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "webhook at 127.0.0.1") {
		t.Errorf("log does not name the webhook by host:\n%s", logs.String())
	}
}

func TestRunPostsQueuedEvents(t *testing.T) {
	kv := claims(t)
	rcv := newReceiver(t)
	n := newNotifier(t, kv, []Webhook{{Kind: Teams, URL: rcv.url()}}, clocktest.New(time.Now()), nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	ev, ok := FromRecord(audit.Record{RequestID: "r-1", Outcome: audit.Failed, Action: "block_ip", Target: map[string]string{"ip": "203.0.113.9"}})
	if !ok {
		t.Fatal("a failed request is worth a notification")
	}
	n.Enqueue(ev)
	<-rcv.got
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := FromRecord(audit.Record{RequestID: "r-1", Outcome: audit.Succeeded}); ok {
		t.Error("a success is not worth a notification")
	}
}

func TestWebhookChecks(t *testing.T) {
	for _, w := range []Webhook{
		{Kind: Teams, URL: "http://contoso.webhook.office.com/webhookb2/x"}, // plain HTTP off loopback
		{Kind: Slack, URL: "hooks.slack.com/services/x"},
		{Kind: "pager", URL: "https://example.com/x"},
	} {
		if err := w.Check(); err == nil {
			t.Errorf("%+v accepted", w)
		} else if strings.Contains(err.Error(), "/x") {
			t.Errorf("error names the URL: %v", err)
		}
	}
	if err := (Webhook{Kind: Slack, URL: "https://hooks.slack.com/services/T/B/x"}).Check(); err != nil {
		t.Error(err)
	}
}
