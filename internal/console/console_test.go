package console

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// newTestConsole is a console on a real embedded NATS server (no engine:
// these cases never reach one).
func newTestConsole(t *testing.T) *Console {
	t.Helper()
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	c, _ := newTestConsoleBus(t, &now)
	return c
}

// newTestConsoleBus runs the console on clock *now.
func newTestConsoleBus(t *testing.T, now *time.Time) (*Console, *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	nc, err := b.Connect(nats.Name("console-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	kp, err := analyst.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := analyst.NewDirectory()
	c, err := New(Config{Tenant: "8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de", LoginURL: "https://127.0.0.1:1", ClientID: "c", ClientSecret: "s",
		RedirectURL: "http://127.0.0.1:9464/auth/callback", Conn: nc, Key: kp, Directory: func() *analyst.Directory { return dir },
		Audit: audit.NewWriter(b.JS, audit.WriterOptions{}), Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return c, b
}

// A page anywhere on the web can make a browser POST to the console: each
// refusal is audited, but at most RefusalsPerMinute a minute, the rest
// counted into the next record.
func TestRefusalsAuditedBounded(t *testing.T) {
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	c, b := newTestConsoleBus(t, &now)
	for range RefusalsPerMinute + 15 {
		r := httptest.NewRequest("POST", "/approvals/x/approve", strings.NewReader("reason=x"))
		r.Host = "127.0.0.1:9464"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://evil.example")
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Fatalf("cross-site POST: %d", w.Code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	count := func() uint64 {
		st, err := b.JS.Stream(ctx, bus.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Msgs
	}
	if n := count(); n != RefusalsPerMinute {
		t.Fatalf("%d refusals audited in a minute, want %d", n, RefusalsPerMinute)
	}
	// A minute later the next refusal is audited and says how many were not.
	now = now.Add(time.Minute)
	r := httptest.NewRequest("POST", "/act", strings.NewReader("csrf=x"))
	r.Host = "127.0.0.1:9464"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c.ServeHTTP(httptest.NewRecorder(), r)
	if n := count(); n != RefusalsPerMinute+1 {
		t.Fatalf("after a minute: %d records", n)
	}
	var last audit.Record
	if err := audit.List(ctx, b.JS, audit.Filter{}, func(rec audit.Record) error { last = rec; return nil }); err != nil {
		t.Fatal(err)
	}
	if last.Outcome != audit.Rejected || !strings.Contains(last.Detail, "15 more refusals") || !strings.Contains(last.Detail, "CSRF") {
		t.Fatalf("last record %+v", last)
	}
}

func TestConsoleRefusesWithoutSignIn(t *testing.T) {
	c := newTestConsole(t)
	do := func(method, target, host string, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Host = host
		if method == http.MethodPost {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		return w
	}
	// DNS rebinding: another host name is refused before anything else.
	if w := do("GET", "/approvals", "evil.example:9464", ""); w.Code != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d", w.Code)
	}
	w := do("GET", "/approvals", "127.0.0.1:9464", "")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/signin") {
		t.Errorf("pages need a session: %d %s", w.Code, w.Header().Get("Location"))
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
		if w.Header().Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	// A state change without a session (and so without its CSRF token).
	for _, p := range []string{"/approvals/x/approve", "/act", "/requests/x/undo", "/logout"} {
		if w := do("POST", p, "127.0.0.1:9464", "csrf=guess&reason=x"); w.Code != http.StatusForbidden {
			t.Errorf("POST %s without a session: %d", p, w.Code)
		}
	}
	// A callback this browser did not start.
	if w := do("GET", "/auth/callback?state=abc&code=def", "127.0.0.1:9464", ""); w.Code != http.StatusBadRequest {
		t.Errorf("callback without its login cookie: %d", w.Code)
	}
	// Sign-in starts on the redirect URI's host, so the callback gets its cookie.
	if w := do("GET", "/login?next=/audit", "localhost:9464", ""); w.Code != http.StatusFound || w.Header().Get("Location") != "http://127.0.0.1:9464/login?next="+url.QueryEscape("/audit") {
		t.Errorf("login on another host: %d %s", w.Code, w.Header().Get("Location"))
	}
	if w := do("GET", "/static/console.js", "127.0.0.1:9464", ""); w.Code != http.StatusOK {
		t.Errorf("assets: %d", w.Code)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/audit?since=1h": "/audit?since=1h", "": "/approvals", "https://evil.example/": "/approvals",
		"//evil.example/": "/approvals", "/\\evil.example": "/approvals", "/a\r\nSet-Cookie: x": "/approvals",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckClaims(t *testing.T) {
	const tenant = "8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de"
	ok := idClaims{OID: "ca201000-0000-4000-8000-000000000003", TID: tenant, Nonce: "n", UTI: "u"}
	if err := checkClaims(ok, "n", tenant); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]idClaims{
		"another sign-in's nonce": {OID: ok.OID, TID: tenant, Nonce: "other", UTI: "u"},
		"no nonce":                {OID: ok.OID, TID: tenant, UTI: "u"},
		"another tenant":          {OID: ok.OID, TID: "00000000-0000-4000-8000-000000000000", Nonce: "n", UTI: "u"},
		"no object id":            {TID: tenant, Nonce: "n", UTI: "u"},
		"no token id":             {OID: ok.OID, TID: tenant, Nonce: "n"},
	} {
		if err := checkClaims(c, "n", tenant); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	kp, err := analyst.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Tenant: "t", LoginURL: "https://l", ClientID: "c", RedirectURL: "http://responder.example.com/auth/callback",
		Conn: &nats.Conn{}, Key: kp, Directory: func() *analyst.Directory { return nil }})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v", err)
	}
}
