package ops

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

const testToken = "test-token-0123456789abcdefghijkl"

func getWithToken(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	return http.DefaultClient.Do(req)
}

// serve runs s on a loopback listener until the test ends.
func serve(t *testing.T, ctx context.Context, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// TestAPIAuditRefusesWithoutCredentials plays the attacker: a local process
// or a web page rebinding its name to loopback tries to read the audit trail.
// Each attempt gets its status and no record, and is audited as rejected.
func TestAPIAuditRefusesWithoutCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w := audit.NewWriter(b.JS, audit.WriterOptions{})
	if _, err := w.Append(ctx, audit.Record{TenantID: "t1", Time: time.Now(), Action: "disable_user", Outcome: audit.Succeeded,
		Actor: audit.Actor{Kind: "analyst", Name: "alice"}, Target: map[string]string{"user": "carol@contoso.com"}, Detail: "SECRET-DETAIL"}); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{Registry: prometheus.NewRegistry(), Audit: b.JS, Tenant: "t1", Token: testToken,
		Refused: AuditRefusals(w, "t1", nil)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, ctx, s)
	url := "http://" + addr + "/api/audit"
	cases := []struct {
		name, host, auth string
		want             int
	}{
		{"no token", "", "", http.StatusUnauthorized},
		{"basic auth", "", "Basic YWxpY2U6cHc=", http.StatusUnauthorized},
		{"wrong token", "", "Bearer " + strings.Repeat("x", len(testToken)), http.StatusForbidden},
		{"token prefix", "", "Bearer " + testToken[:len(testToken)-1], http.StatusForbidden},
		{"rebinding host", "evil.example:" + strings.Split(addr, ":")[1], "Bearer " + testToken, http.StatusMisdirectedRequest},
		{"rebinding host without port", "evil.example", "", http.StatusMisdirectedRequest},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if c.host != "" {
			req.Host = c.host
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if strings.Contains(string(body), "SECRET-DETAIL") || strings.Contains(string(body), "carol@") {
			t.Errorf("%s: a record leaked: %q", c.name, body)
		}
	}
	// Every attempt is in the audit trail as rejected, the token never.
	var refused []audit.Record
	if err := audit.List(ctx, b.JS, audit.Filter{TenantID: "t1", Action: AuditAction}, func(r audit.Record) error {
		refused = append(refused, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(refused) != len(cases) {
		t.Fatalf("%d refusals audited, want %d", len(refused), len(cases))
	}
	for i, r := range refused {
		if r.Outcome != audit.Rejected || strings.Contains(r.Detail, testToken) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if !strings.Contains(refused[4].Detail, "evil.example") {
		t.Errorf("the rebinding record does not name the host: %s", refused[4].Detail)
	}
	// The open endpoints stay open, and the right token reads.
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatal(err)
	}
	resp, err := getWithToken(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "SECRET-DETAIL") {
		t.Fatalf("with the token: %d %q", resp.StatusCode, body)
	}
}

func TestNewServerNeedsCredentialsForAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nb, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	if _, err := NewServer(Config{Registry: prometheus.NewRegistry(), Audit: nb.JS}); err == nil {
		t.Fatal("an /api/audit without token or mTLS was accepted")
	}
	if _, err := NewServer(Config{Registry: prometheus.NewRegistry(), Audit: nb.JS, Token: "short"}); err == nil {
		t.Fatal("a short token was accepted")
	}
}

func TestHostAllowed(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:9464": true, "[::1]:9464": true, "localhost:9464": true, "LOCALHOST": true, "10.1.2.3": true,
		"ops.internal:9464": true, "evil.example": false, "evil.example:9464": false, "127.0.0.1.nip.io:9464": false,
		"": false, "localhost.evil.example": false,
	} {
		if got := hostAllowed(host, []string{"ops.internal"}); got != want {
			t.Errorf("%q: %v, want %v", host, got, want)
		}
	}
}

func TestRefusalsAreBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var told []Refusal
	s, err := NewServer(Config{Registry: prometheus.NewRegistry(), Token: testToken, Now: func() time.Time { return now },
		Refused: func(_ context.Context, r Refusal) { mu.Lock(); told = append(told, r); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	for range RefusalsPerMinute + 40 {
		get(t, s.Handler(), "/api/audit")
	}
	if len(told) != RefusalsPerMinute {
		t.Fatalf("%d told, want %d", len(told), RefusalsPerMinute)
	}
	now = now.Add(time.Minute)
	get(t, s.Handler(), "/api/audit")
	if len(told) != RefusalsPerMinute+1 || !strings.Contains(told[len(told)-1].Reason, "40 more") {
		t.Fatalf("after a minute: %d told, last %+v", len(told), told[len(told)-1])
	}
}

func TestEnsureToken(t *testing.T) {
	dir := t.TempDir()
	tok, created, err := EnsureToken(dir)
	if err != nil || !created || CheckToken(tok) != nil {
		t.Fatal(tok, created, err)
	}
	st, err := os.Stat(TokenPath(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatal(st.Mode(), err)
	}
	again, created, err := EnsureToken(dir)
	if err != nil || created || again != tok {
		t.Fatal("the token changed")
	}
	if err := os.Chmod(TokenPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureToken(dir); err == nil || strings.Contains(err.Error(), tok) {
		t.Fatalf("a world-readable token file: %v", err)
	}
}

// TestAPIAuditMutualTLS: a client certificate signed by the configured CA
// reads without a token; a client without one (or with a self-signed one)
// still needs the token.
func TestAPIAuditMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nb, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	ca, caKey := newCA(t, "ops test CA")
	serverCert := leaf(t, ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	clientCert := leaf(t, ca, caKey, "reviewer", x509.ExtKeyUsageClientAuth)
	rogueCA, rogueKey := newCA(t, "rogue CA")
	rogue := leaf(t, rogueCA, rogueKey, "reviewer", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s, err := NewServer(Config{Registry: prometheus.NewRegistry(), Audit: nb.JS, TLS: &tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, ctx, s)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
	}
	status := func(c *http.Client, path string) int {
		resp, err := c.Get("https://" + addr + path)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(client(clientCert), "/api/audit"); got != 200 {
		t.Errorf("with a client certificate: %d", got)
	}
	if got := status(client(), "/api/audit"); got != http.StatusUnauthorized {
		t.Errorf("without one: %d", got)
	}
	if got := status(client(rogue), "/api/audit"); got == 200 {
		t.Errorf("with a certificate of another CA: %d", got)
	}
	if got := status(client(), "/metrics"); got != 200 {
		t.Errorf("/metrics without a certificate: %d", got)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, use x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{use}, KeyUsage: x509.KeyUsageDigitalSignature}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
