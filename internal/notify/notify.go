package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/clock"
)

// Kind is a webhook's receiver.
type Kind string

// The receivers.
const (
	Teams   Kind = "teams"
	Slack   Kind = "slack"
	Generic Kind = "webhook"
)

// Webhook is one destination. URL is a secret.
type Webhook struct {
	Kind Kind
	URL  string
}

// name is how logs and errors name w: its kind and host, never its path or
// query (where the secret is).
func (w Webhook) name() string {
	u, err := url.Parse(w.URL)
	if err != nil || u.Host == "" {
		return string(w.Kind) + " webhook"
	}
	return string(w.Kind) + " webhook at " + u.Host
}

// Check validates a webhook: an absolute https URL (http only to a loopback
// host, for tests and local relays).
func (w Webhook) Check() error {
	switch w.Kind {
	case Teams, Slack, Generic:
	default:
		return fmt.Errorf("notify: unknown webhook kind %q (teams, slack, webhook)", w.Kind)
	}
	u, err := url.Parse(w.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("notify: the %s webhook URL is not an absolute URL", w.Kind)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Errorf("notify: the %s webhook URL must use https (it carries a secret)", w.Kind)
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Event is what a notification says.
type Event struct {
	RequestID string
	// State is audit.PendingApproval or audit.Failed.
	State     audit.Outcome
	Action    string
	Target    map[string]string
	Requester audit.Actor
	Reason    string
	Playbook  string
	EventID   string
	Ticket    string
	// Detail is the record's detail (approvals still needed, the error).
	Detail    string
	ErrorCode string
	Time      time.Time
}

// FromRecord is the event a record is worth, and whether it is worth one: a
// request held for approval or failed.
func FromRecord(r audit.Record) (Event, bool) {
	if r.RequestID == "" || (r.Outcome != audit.PendingApproval && r.Outcome != audit.Failed) {
		return Event{}, false
	}
	return Event{RequestID: r.RequestID, State: r.Outcome, Action: r.Action, Target: r.Target, Requester: r.Actor,
		Reason: r.Reason, Playbook: r.Playbook, EventID: r.EventID, Ticket: r.Ticket, Detail: r.Detail,
		ErrorCode: r.ErrorCode, Time: r.Time}, true
}

// Claimer remembers what was posted (the state bucket: create fails when the
// key exists).
type Claimer interface {
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
}

// Defaults of Config.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = time.Second
	DefaultMaxDelay    = 60 * time.Second
	DefaultQueue       = 256
	// requestTimeout bounds one post.
	requestTimeout = 15 * time.Second
)

// Config wires a Notifier.
type Config struct {
	Webhooks []Webhook
	// ConsoleURL is the console's base URL; a request's page is
	// ConsoleURL/requests/<id>.
	ConsoleURL string
	// Claims deduplicates (required).
	Claims Claimer
	// HTTPClient posts (default: a client with a 15 s timeout).
	HTTPClient *http.Client
	Clock      clock.Clock
	// MaxAttempts bounds the posts of one notification (default 5);
	// BaseDelay and MaxDelay the backoff between them (1 s doubling, 60 s).
	MaxAttempts         int
	BaseDelay, MaxDelay time.Duration
	// Queue bounds the events waiting (default 256).
	Queue  int
	Logger *slog.Logger
}

// Notifier posts notifications. Enqueue is safe for concurrent use; Run
// must be running for anything to be posted.
type Notifier struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock
	queue chan Event
}

// New checks cfg.
func New(cfg Config) (*Notifier, error) {
	if cfg.Claims == nil {
		return nil, errors.New("notify: a Claims store is required")
	}
	for _, w := range cfg.Webhooks {
		if err := w.Check(); err != nil {
			return nil, err
		}
	}
	if cfg.ConsoleURL != "" {
		u, err := url.Parse(cfg.ConsoleURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("notify: the console URL %q is not an absolute http(s) URL", cfg.ConsoleURL)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: requestTimeout}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{cfg: cfg, log: cfg.Logger, clock: clock.Or(cfg.Clock), queue: make(chan Event, cfg.Queue)}, nil
}

// Enqueue queues ev without blocking; a full queue drops it (logged).
func (n *Notifier) Enqueue(ev Event) {
	select {
	case n.queue <- ev:
	default:
		n.log.Warn("notification queue full: notification dropped (the audit trail has the record)",
			"request_id", ev.RequestID, "state", ev.State)
	}
}

// Run posts queued notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-n.queue:
			n.Send(ctx, ev)
		}
	}
}

// Send posts ev to every webhook that has not had it yet, with retries, and
// returns what failed (each error names the webhook by kind and host only).
func (n *Notifier) Send(ctx context.Context, ev Event) []error {
	var errs []error
	for i, w := range n.cfg.Webhooks {
		key := bus.NotificationKey(ev.RequestID, string(ev.State), strconv.Itoa(i)+"-"+string(w.Kind))
		if _, err := n.cfg.Claims.Create(ctx, key, []byte(n.clock.Now().UTC().Format(time.RFC3339))); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // posted already (or being posted by another engine)
			}
			err = fmt.Errorf("notify: claim %s for request %s: %w", w.name(), ev.RequestID, err)
			n.log.Error("notification not sent", "err", err)
			errs = append(errs, err)
			continue
		}
		if err := n.post(ctx, w, ev); err != nil {
			n.log.Error("notification not sent", "request_id", ev.RequestID, "state", ev.State, "err", err)
			errs = append(errs, err)
			continue
		}
		n.log.Info("notification sent", "request_id", ev.RequestID, "state", ev.State, "to", w.name())
	}
	return errs
}

// post sends one notification to w, retrying transient failures.
func (n *Notifier) post(ctx context.Context, w Webhook, ev Event) error {
	body, err := Payload(w.Kind, ev, n.link(ev.RequestID))
	if err != nil {
		return err
	}
	var last error
	for attempt := 1; attempt <= n.cfg.MaxAttempts; attempt++ {
		retry, wait, err := n.try(ctx, w, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || attempt == n.cfg.MaxAttempts {
			break
		}
		d := min(n.cfg.BaseDelay<<(attempt-1), n.cfg.MaxDelay)
		if wait > d {
			d = min(wait, n.cfg.MaxDelay)
		}
		n.log.Warn("notification failed; retrying", "to", w.name(), "request_id", ev.RequestID, "attempt", attempt, "in", d, "err", err)
		if err := clock.Sleep(ctx, n.clock, d); err != nil {
			return fmt.Errorf("notify: %s: %w", w.name(), err)
		}
	}
	return fmt.Errorf("notify: %s gave up after %d attempts: %w", w.name(), n.cfg.MaxAttempts, last)
}

// try posts once: whether a failure is worth retrying, and how long the
// receiver asked to wait (429 Retry-After).
func (n *Notifier) try(ctx context.Context, w Webhook, body []byte) (retry bool, wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("%s: build request: %w", w.name(), redact(err, w))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.cfg.HTTPClient.Do(req)
	if err != nil {
		return true, 0, fmt.Errorf("%s: %w", w.name(), redact(err, w))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		return true, retryAfter(resp.Header.Get("Retry-After"), n.clock.Now()), fmt.Errorf("%s: %s", w.name(), resp.Status)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return true, 0, fmt.Errorf("%s: %s", w.name(), resp.Status)
	}
	// A refusal is final: a removed or disabled webhook, a payload the
	// receiver rejects. Its text may help (Slack says "invalid_payload").
	return false, 0, fmt.Errorf("%s: %s: %s", w.name(), resp.Status, printable(string(snippet)))
}

// retryAfter reads a Retry-After header (seconds or an HTTP date; RFC 9110
// section 10.2.3).
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// redact removes the webhook's URL (a secret) from err's text: url.Error
// names the URL it was posting to.
func redact(err error, w Webhook) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s: %w", ue.Op, redact(ue.Err, w))
	}
	msg := err.Error()
	if w.URL != "" && strings.Contains(msg, w.URL) {
		return errors.New(strings.ReplaceAll(msg, w.URL, "[webhook URL]"))
	}
	if u, perr := url.Parse(w.URL); perr == nil && u.Path != "" && len(u.Path) > 1 && strings.Contains(msg, u.Path) {
		return errors.New(strings.ReplaceAll(msg, u.Path, "/[redacted]"))
	}
	return err
}

// printable keeps a receiver's answer to one short line.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// link is the request's page in the console ("" without a console URL).
func (n *Notifier) link(requestID string) string {
	if n.cfg.ConsoleURL == "" {
		return ""
	}
	return strings.TrimRight(n.cfg.ConsoleURL, "/") + "/requests/" + url.PathEscape(requestID)
}
