package m365sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientFor trusts the CA of dir and reaches host at t's loopback address,
// as a container of the compose network reaches the emulator by its name.
func clientFor(t *testing.T, dir string, ten *Tenant) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, CAFileName))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem holds no certificate")
	}
	addr := ten.ln.Addr().String()
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
}

func hostedToken(t *testing.T, hc *http.Client, info Info, secret string) int {
	t.Helper()
	return hostedTokenFor(t, hc, info, secret, "https://graph.microsoft.com/.default")
}

func hostedTokenFor(t *testing.T, hc *http.Client, info Info, secret, scope string) int {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ClientID}, "client_secret": {secret},
		"scope": {scope}}
	res, err := hc.PostForm(info.LoginURL+"/"+info.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// The compose sandbox (docker-compose.sandbox.yml): engines in other
// containers reach the emulator as https://sim:8443 with the secret they were
// given, trusting a CA kept in a volume across restarts.
func TestHostedTenant(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Hosts: []string{"sim.test"}, TLSDir: dir, ClientSecret: "given-secret"}
	ten, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	info := ten.Info()
	if !strings.HasPrefix(info.LoginURL, "https://sim.test:") || !strings.HasPrefix(info.GraphURL, "https://sim.test:") {
		t.Fatalf("URLs do not name the host: %+v", info)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", st, err)
	}
	hc := clientFor(t, dir, ten)
	if code := hostedToken(t, hc, info, "given-secret"); code != http.StatusOK {
		t.Fatalf("token with the given secret: %d", code)
	}
	// Responder scopes a token for a host that is not Microsoft's to that
	// host's origin (m365.Audience): the emulator's own origin is a resource.
	if code := hostedTokenFor(t, hc, info, "given-secret", info.LoginURL+"/.default"); code != http.StatusOK {
		t.Fatalf("token for the emulator's origin: %d", code)
	}
	if code := hostedTokenFor(t, hc, info, "given-secret", "https://other.test/.default"); code != http.StatusBadRequest {
		t.Fatalf("token for an origin the emulator is not: %d, want 400", code)
	}
	// Misuse: another secret is refused, whatever the default app had.
	if code := hostedToken(t, hc, info, "sim~guess"); code != http.StatusUnauthorized {
		t.Fatalf("token with a wrong secret: %d, want 401", code)
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, CAFileName))
	if err := ten.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted on the same directory: same CA, so a client that loaded it
	// once still trusts the emulator.
	ten2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ten2.Close()
	caAfter, _ := os.ReadFile(filepath.Join(dir, CAFileName))
	if string(caAfter) != string(caBefore) {
		t.Fatal("the CA changed across a restart")
	}
	old := hc.Transport.(*http.Transport).TLSClientConfig
	hc2 := clientFor(t, dir, ten2)
	hc2.Transport.(*http.Transport).TLSClientConfig = old
	if code := hostedToken(t, hc2, ten2.Info(), "given-secret"); code != http.StatusOK {
		t.Fatalf("token after the restart: %d", code)
	}
	// The certificate does not cover names it was not given.
	bad := clientFor(t, dir, ten2)
	res, err := bad.Get(strings.Replace(ten2.Info().AdminURL, "sim.test", "other.test", 1) + "/info")
	if err == nil {
		res.Body.Close()
		t.Fatal("a name outside the certificate was accepted")
	}
}

// --init-ca of `responder sim`: made once, then kept.
func TestEnsureCAKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	a, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("EnsureCA replaced an existing CA")
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFileName), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCA(dir); err == nil {
		t.Fatal("a damaged CA key was accepted")
	}
}
