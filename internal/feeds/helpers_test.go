package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// testClock is the real clock plus an offset that tests move forward, so that
// throttling buckets still refill.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func newTestClock() *testClock { return &testClock{} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type env struct {
	clock *testClock
	tn    *m365sim.Tenant
	bus   *bus.Bus
	kv    jetstream.KeyValue
	creds m365.Credentials
	hc    *http.Client // Management API bearer client
}

var quiet = slog.New(slog.DiscardHandler)

func newEnv(t testing.TB, opts m365sim.Options) *env {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = m365sim.SeedSmall
	}
	clk := newTestClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = 30 * 24 * time.Hour
	}
	tn, err := m365sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tn.Close() })
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := tn.Info()
	c := m365.Credentials{TenantID: in.TenantID, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
		LoginURL: in.LoginURL, GraphURL: in.GraphURL, ManageURL: in.ManageURL, HTTPClient: tn.HTTPClient(), GraphMaxRetries: -1}
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	return &env{clock: clk, tn: tn, bus: b, kv: kv, creds: c, hc: m365.BearerClient(c, cred, c.ManageScope())}
}

// subscribed starts the content types' subscriptions now, as an earlier run
// would have: Microsoft lists no content created before a subscription starts
// (m365sim's default), so a test whose content predates its poller subscribes
// first, and the poller finds the subscriptions enabled.
func (e *env) subscribed(t testing.TB, cts ...string) {
	t.Helper()
	if err := e.tn.StartSubscription(cts...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) manageConfig() ManagementConfig {
	in := e.tn.Info()
	return ManagementConfig{
		Tenant: in.TenantID, HTTP: e.hc, BaseURL: in.ManageURL, JS: e.bus.JS, KV: e.kv,
		Now: e.clock.Now, RetryBase: 2 * time.Millisecond, RetryMax: 20 * time.Millisecond, MaxAttempts: 8, Logger: quiet,
	}
}

// eventIDs reads every message on EVENTS and counts each Nats-Msg-Id and each
// envelope id.
func eventIDs(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	total := int(info.State.Msgs)
	if total == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for seen < total {
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				t.Fatalf("event is not JSON: %v", err)
			}
			if h := m.Headers().Get(jetstream.MsgIDHeader); h != e.ID {
				t.Fatalf("Nats-Msg-Id %q != envelope id %q", h, e.ID)
			}
			out[e.ID]++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			t.Fatal(err)
		}
		if n == 0 && ctx.Err() != nil {
			t.Fatalf("EVENTS: read %d of %d messages", seen, total)
		}
		seen += n
	}
	return out
}

// auditRecord is a Management Activity record with a unique Id.
func auditRecord(tenant, id string, at time.Time, op string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"CreationTime":%q,"Id":%q,"Operation":%q,"OrganizationId":%q,"RecordType":1,"ResultStatus":"True","UserKey":"10032002F222981B","UserType":2,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823","UserId":"alice@contoso.com","Parameters":[{"Name":"Name","Value":"f"}]}`,
		m365sim.AuditRecordTime(at), id, op, tenant))
}

func manageCall(t testing.TB, e *env, method, path string) {
	t.Helper()
	in := e.tn.Info()
	req, err := http.NewRequestWithContext(context.Background(), method, in.ManageURL+"/"+in.TenantID+"/activity/feed/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}
