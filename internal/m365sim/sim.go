package m365sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTenantID is the sandbox tenant.
const DefaultTenantID = "8f3c2a51-6a0e-4f6b-9d2e-2b7c41d0c0de"

// Seed selects the initial directory content.
type Seed int

const (
	// SeedNone starts with an empty directory (only the default app exists).
	SeedNone Seed = iota
	// SeedSmall: alice, bob, carol, breakglass@contoso.com; contoso.com; one
	// Global Administrator member.
	SeedSmall
	// SeedOrg: the `responder sim` organisation plus a day of background activity.
	SeedOrg
)

// Options configure a Tenant. Zero values take the documented defaults.
type Options struct {
	TenantID          string        // default DefaultTenantID
	Listen            string        // default "127.0.0.1:0"
	Seed              Seed          // initial content
	AvailabilityDelay time.Duration // before injected records become visible (default 0)
	TokenLifetime     time.Duration // default 1h
	Logger            *slog.Logger  // default: discard
	Now               func() time.Time
	// Throttling turns Microsoft's throttling budgets on from the start (default
	// off; see SetThrottling and SetLimit).
	Throttling bool
	// Licence is the tenant's Entra ID edition (default P2; licence.go).
	Licence Licence
	// Hosts are names (or addresses) the tenant is reached by besides
	// loopback, put in its certificate; the first is the host of its URLs
	// (hosted.go: the compose sandbox).
	Hosts []string
	// TLSDir keeps the CA (ca.pem, ca-key.pem) across restarts; made when
	// missing. Empty: a fresh CA in memory.
	TLSDir string
	// ClientSecret replaces the default application's generated secret.
	ClientSecret string
}

// Tenant is one emulated Microsoft 365 tenant served over TLS on loopback.
type Tenant struct {
	opts   Options
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	base   string // https://127.0.0.1:port
	caPEM  []byte
	pool   *x509.CertPool
	sigKey []byte
	done   chan struct{}
	wg     sync.WaitGroup
	// handlers counts running request handlers, so Close can wait for them.
	handlers sync.WaitGroup
	busy     atomic.Int32

	closeOnce sync.Once

	// mu guards st (and the fields marked so). Writers hold it exclusively;
	// the mail handlers hold it shared plus the mailbox's own lock
	// (mailbox.mu, mail.go), so requests to different mailboxes do not wait
	// for each other.
	mu    sync.RWMutex
	st    *state
	clock func() time.Time

	wmu      sync.Mutex
	wire     []WireEntry
	inflight map[string]int // mailbox -> in-flight requests

	fmu    sync.Mutex
	faults []*faultRec
	nextF  int
	// contentBase replaces base in the contentUri of content listings
	// (SetContentURIBase; "" = base), under fmu.
	contentBase string

	thr *throttler
	// tokens caches verified bearer tokens (tokcache.go).
	tokens tokenCache
	// oidc: people's sign-in (oidc.go); ready as its zero value.
	oidc oidcState

	noPremium  bool        // guarded by mu
	noP2       bool        // guarded by mu (licence.go)
	mgmt       manageKnobs // guarded by mu; see manage_subs.go
	pageSize   int         // content listing page size, guarded by mu
	routesOnce sync.Once
	routeTable []route
	// mde is the Defender for Endpoint state (defender.go), guarded by mu.
	mde defender
}

// New starts serving TLS on loopback and returns when the tenant is ready.
func New(opts Options) (*Tenant, error) {
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if !isGUID(opts.TenantID) {
		return nil, fmt.Errorf("m365sim: tenant id %q is not a GUID", opts.TenantID)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Tenant{opts: opts, log: opts.Logger, clock: opts.Now, done: make(chan struct{}), inflight: map[string]int{}}
	t.sigKey = make([]byte, 32)
	if _, err := rand.Read(t.sigKey); err != nil {
		return nil, fmt.Errorf("m365sim: signing key: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("m365sim: listen %s: %w", opts.Listen, err)
	}
	cert, caPEM, err := makeHostedCerts(opts.TLSDir, opts.Hosts, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	t.caPEM = caPEM
	t.pool = x509.NewCertPool()
	t.pool.AppendCertsFromPEM(caPEM)
	t.base = baseURL(opts.Hosts, ln.Addr())
	t.st = newState(t)
	t.applyLicenceLocked(opts.Licence) // t is not shared yet
	if opts.ClientSecret != "" {
		t.st.apps[defaultClientID].ClientSecret = opts.ClientSecret
	}
	t.thr = newThrottler(t.now, opts.Throttling)
	t.seed(opts.Seed)

	t.srv = &http.Server{
		Handler:           http.HandlerFunc(t.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.Background() },
	}
	t.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	// HTTP/2 over a custom TLS listener needs explicit protocols.
	t.srv.Protocols = new(http.Protocols)
	t.srv.Protocols.SetHTTP1(true)
	t.srv.Protocols.SetHTTP2(true)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.log.Error("m365sim: serve", "err", err)
		}
	}()
	t.log.Info("m365sim: tenant ready", "tenant_id", opts.TenantID, "url", t.base)
	return t, nil
}

// Close stops the server and every goroutine the tenant owns.
func (t *Tenant) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.done) // wakes handlers sleeping on injected latency
		if e := t.srv.Close(); e != nil {
			err = fmt.Errorf("m365sim: close: %w", e)
		}
		t.wg.Wait()       // Serve has returned
		t.handlers.Wait() // every handler has returned
	})
	return err
}

func (t *Tenant) now() time.Time { return t.clock().UTC() }

// Info describes how to reach the tenant as its default application.
type Info struct {
	TenantID     string `json:"tenant_id"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	LoginURL     string `json:"login_url"`
	GraphURL     string `json:"graph_url"`
	ManageURL    string `json:"manage_url"`
	ExchangeURL  string `json:"exchange_url"`
	// DefenderURL is the Defender for Endpoint API origin (paths /api/…).
	DefenderURL string `json:"defender_url"`
	AdminURL    string `json:"admin_url"`
	CAPEM       []byte `json:"-"`
	CAFile      string `json:"ca_file,omitempty"`
}

// Info returns the endpoints and the default app, which holds every permission
// Responder needs.
func (t *Tenant) Info() Info {
	t.mu.Lock()
	app := t.st.apps[defaultClientID]
	t.mu.Unlock()
	return Info{
		TenantID:     t.opts.TenantID,
		ClientID:     app.ClientID,
		ClientSecret: app.ClientSecret,
		LoginURL:     t.base,
		GraphURL:     t.base + "/v1.0",
		ManageURL:    t.base + "/api/v1.0",
		ExchangeURL:  t.base + "/adminapi/beta",
		DefenderURL:  t.base,
		AdminURL:     t.base + "/_sim",
		CAPEM:        append([]byte(nil), t.caPEM...),
	}
}

// URL is the tenant's origin (https://127.0.0.1:port).
func (t *Tenant) URL() string { return t.base }

// CertPool holds the emulator CA.
func (t *Tenant) CertPool() *x509.CertPool { return t.pool.Clone() }

// HTTPClient returns a client that trusts the emulator CA.
func (t *Tenant) HTTPClient() *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: t.CertPool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		MaxIdleConns:      100,
		IdleConnTimeout:   30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 100 * time.Second}
}

// WriteCAFile writes the CA certificate (PEM) to path.
func (t *Tenant) WriteCAFile(path string) error {
	if err := os.WriteFile(path, t.caPEM, 0o644); err != nil {
		return fmt.Errorf("m365sim: write CA file: %w", err)
	}
	return nil
}

func makeCerts(addr net.Addr) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: CA key: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "m365sim local CA", Organization: []string{"Responder sandbox"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: CA cert: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: CA parse: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		leaf.IPAddresses = append(leaf.IPAddresses, ta.IP)
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: server cert: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, caPEM, nil
}

func unixNano(n int64) time.Time { return time.Unix(0, n).UTC() }
