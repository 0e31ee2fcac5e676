package m365sim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/responder-sec/responder/internal/m365"
)

// fakeClock is an injectable clock for tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startTenant(t *testing.T, opts Options) *Tenant {
	t.Helper()
	tn, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tn.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tn
}

func creds(tn *Tenant) m365.Credentials {
	in := tn.Info()
	return m365.Credentials{TenantID: in.TenantID, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
		LoginURL: in.LoginURL, GraphURL: in.GraphURL, ManageURL: in.ManageURL, HTTPClient: tn.HTTPClient(), GraphMaxRetries: -1}
}

func graphClient(t *testing.T, c m365.Credentials) *msgraphsdk.GraphServiceClient {
	t.Helper()
	gc, _, err := m365.NewGraphClient(c)
	if err != nil {
		t.Fatalf("NewGraphClient: %v", err)
	}
	return gc
}

// selfSignedPEM returns a PEM with an RSA private key followed by its
// certificate (what azidentity.ParseCertificates wants) and the cert alone.
func selfSignedPEM(t *testing.T) (keyAndCert, certOnly []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "responder-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, key)})
	cb := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(kb, cb...), cb
}

func mustPKCS8(t *testing.T, k *rsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bearer fetches a token with the default app for a resource scope.
func bearer(t *testing.T, tn *Tenant, scope string) string {
	t.Helper()
	c := creds(tn)
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := m365.Token(context.Background(), cred, scope)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok
}

// do sends a plain HTTP request with a bearer token.
func do(t *testing.T, tn *Tenant, method, url, tok, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := tn.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
