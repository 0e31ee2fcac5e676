package m365

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kiotaauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
)

// Public-cloud defaults.
const (
	DefaultLoginURL  = "https://login.microsoftonline.com"
	DefaultGraphURL  = "https://graph.microsoft.com/v1.0"
	DefaultManageURL = "https://manage.office.com/api/v1.0"
	// DefaultExchangeURL is the Exchange Online admin API (the REST endpoint
	// of the ExchangeOnlineManagement v3 module), for what Graph does not
	// expose (mailbox forwarding).
	DefaultExchangeURL = "https://outlook.office365.com/adminapi/beta"
	// DefaultDefenderURL is the Microsoft Defender for Endpoint API
	// (regional hosts such as https://eu.api.security.microsoft.com serve
	// the same paths: https://learn.microsoft.com/defender-endpoint/api/exposed-apis-list).
	DefaultDefenderURL = "https://api.securitycenter.microsoft.com"
	// DefenderScope is the token scope for the Defender for Endpoint API on
	// every host: the App ID URI of the WindowsDefenderATP application
	// (https://learn.microsoft.com/defender-endpoint/api/exposed-apis-create-app-webapp).
	DefenderScope    = "https://api.securitycenter.microsoft.com/.default"
	graphAudience    = "https://graph.microsoft.com"
	manageAudience   = "https://manage.office.com"
	exchangeAudience = "https://outlook.office365.com"
)

// Credentials say how to reach one tenant as one application.
type Credentials struct {
	TenantID     string
	ClientID     string
	ClientSecret string // either this…
	CertPEM      []byte // …or a PEM with the private key and the certificate
	LoginURL     string // authority host (azidentity's ActiveDirectoryAuthorityHost)
	GraphURL     string // ends in /v1.0
	ManageURL    string // ends in /api/v1.0
	// ExchangeURL is the Exchange Online admin API base, ending in
	// /adminapi/beta (default DefaultExchangeURL; when GraphURL is a loopback
	// emulator, the emulator's own /adminapi/beta).
	ExchangeURL string
	// DefenderURL is the Defender for Endpoint API origin (default
	// DefaultDefenderURL; when GraphURL is a loopback emulator, the
	// emulator's own origin). Paths /api/… are appended.
	DefenderURL string
	// HTTPClient carries TLS settings (extra CAs); nil uses a default client.
	HTTPClient *http.Client
	// GraphMaxRetries bounds the SDK's own retries of 429/503/504 (default 3;
	// negative disables them so the caller retries).
	GraphMaxRetries int
	// MaxRetryAfter is the longest Retry-After the SDK may sleep in place; a longer
	// one is returned to the caller as a throttle (default 30s).
	MaxRetryAfter time.Duration
}

// Validate names the first missing or contradictory setting.
func (c Credentials) Validate() error {
	switch {
	case c.TenantID == "":
		return errors.New("missing tenant id (--tenant-id or RESPONDER_TENANT_ID)")
	case c.ClientID == "":
		return errors.New("missing client id (--client-id or RESPONDER_CLIENT_ID)")
	case c.ClientSecret == "" && len(c.CertPEM) == 0:
		return errors.New("missing credential: set a client secret (RESPONDER_CLIENT_SECRET) or a certificate (RESPONDER_CLIENT_CERT)")
	case c.ClientSecret != "" && len(c.CertPEM) > 0:
		return errors.New("contradictory credentials: set either a client secret or a certificate, not both")
	}
	for name, u := range map[string]string{"login URL": c.LoginURL, "Graph URL": c.GraphURL, "Management API URL": c.ManageURL, "Exchange admin API URL": c.ExchangeURL, "Defender API URL": c.DefenderURL} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "https" || p.Host == "" {
			return fmt.Errorf("%s %q must be an absolute https URL", name, u)
		}
	}
	return nil
}

func (c Credentials) withDefaults() Credentials {
	if c.LoginURL == "" {
		c.LoginURL = DefaultLoginURL
	}
	if c.GraphURL == "" {
		c.GraphURL = DefaultGraphURL
	}
	if c.ManageURL == "" {
		c.ManageURL = DefaultManageURL
	}
	c.GraphURL = strings.TrimRight(c.GraphURL, "/")
	c.ManageURL = strings.TrimRight(c.ManageURL, "/")
	if c.ExchangeURL == "" {
		c.ExchangeURL = DefaultExchangeURL
		if u, err := url.Parse(c.GraphURL); err == nil && isLoopback(u.Hostname()) {
			c.ExchangeURL = u.Scheme + "://" + u.Host + "/adminapi/beta"
		}
	}
	c.ExchangeURL = strings.TrimRight(c.ExchangeURL, "/")
	if c.DefenderURL == "" {
		c.DefenderURL = DefaultDefenderURL
		if u, err := url.Parse(c.GraphURL); err == nil && isLoopback(u.Hostname()) {
			c.DefenderURL = u.Scheme + "://" + u.Host
		}
	}
	c.DefenderURL = strings.TrimRight(c.DefenderURL, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 100 * time.Second}
	}
	if c.GraphMaxRetries == 0 {
		c.GraphMaxRetries = 3
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = 30 * time.Second
	}
	return c
}

// TokenCredential builds the azidentity credential, wrapped so that the
// token in hand is reused while it is comfortably valid (tokencache.go).
func (c Credentials) TokenCredential() (azcore.TokenCredential, error) {
	cred, err := c.azidentityCredential()
	if err != nil {
		return nil, err
	}
	return newReusingCredential(cred, nil), nil
}

// azidentityCredential builds the azidentity credential itself.
func (c Credentials) azidentityCredential() (azcore.TokenCredential, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	copts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: c.LoginURL},
		Transport: c.HTTPClient,
	}
	if c.ClientSecret != "" {
		cred, err := azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: !isPublicLogin(c.LoginURL)})
		if err != nil {
			return nil, fmt.Errorf("client secret credential: %w", scrub(err, c))
		}
		return cred, nil
	}
	certs, key, err := azidentity.ParseCertificates(c.CertPEM, nil)
	if err != nil {
		// The parse error never includes key material, but say only what is wrong.
		return nil, fmt.Errorf("client certificate: the PEM must hold the private key followed by the certificate: %w", err)
	}
	cred, err := azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: !isPublicLogin(c.LoginURL)})
	if err != nil {
		return nil, fmt.Errorf("client certificate credential: %w", err)
	}
	return cred, nil
}

// isPublicLogin reports whether instance discovery can work (a Microsoft host).
// Anything else (sovereign overrides, the emulator) must not attempt it: it calls
// login.microsoftonline.com and fails offline.
func isPublicLogin(login string) bool {
	u, err := url.Parse(login)
	return err == nil && u.Hostname() == "login.microsoftonline.com"
}

// Audience returns the token scope for a resource base URL: the URL's origin plus
// /.default, except for a loopback emulator, which stands in for the public cloud.
func Audience(base, public string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return public + "/.default"
	}
	if isLoopback(u.Hostname()) {
		return public + "/.default"
	}
	return u.Scheme + "://" + u.Host + "/.default"
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// GraphScope is the scope for Graph tokens.
func (c Credentials) GraphScope() string {
	return Audience(c.withDefaults().GraphURL, graphAudience)
}

// ManageScope is the scope for Management Activity API tokens.
func (c Credentials) ManageScope() string {
	return Audience(c.withDefaults().ManageURL, manageAudience)
}

// ExchangeScope is the scope for Exchange Online admin API tokens.
func (c Credentials) ExchangeScope() string {
	return Audience(c.withDefaults().ExchangeURL, exchangeAudience)
}

// DefenderAPIURL is the Defender for Endpoint API origin with its default.
func (c Credentials) DefenderAPIURL() string { return c.withDefaults().DefenderURL }

// ExchangeAdminURL is the Exchange Online admin API base with its default.
func (c Credentials) ExchangeAdminURL() string { return c.withDefaults().ExchangeURL }

// NewGraphClient builds the msgraph-sdk-go client. The SDK only attaches tokens to
// hosts on its allow list, so the configured Graph host is put on it explicitly, and
// the base URL is set before the service client is built (batch and request
// builders copy it at construction).
func NewGraphClient(c Credentials) (*msgraphsdk.GraphServiceClient, azcore.TokenCredential, error) {
	cred, err := c.TokenCredential()
	if err != nil {
		return nil, nil, err
	}
	c = c.withDefaults()
	gu, err := url.Parse(c.GraphURL)
	if err != nil {
		return nil, nil, fmt.Errorf("graph URL: %w", err)
	}
	auth, err := kiotaauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{c.GraphScope()}, []string{gu.Hostname()})
	if err != nil {
		return nil, nil, fmt.Errorf("graph auth provider: %w", err)
	}
	mws := msgraphcore.GetDefaultMiddlewaresWithOptions(&msgraphcore.GraphClientOptions{})
	maxAfter := c.MaxRetryAfter
	retries := c.GraphMaxRetries
	// The SDK's compression handler gzips every body, and when its retry handler
	// resends a request the body goes out plain under the same
	// Content-Encoding: gzip header, which Graph refuses (400). Bodies here are
	// small: send them uncompressed.
	kept := mws[:0]
	for _, mw := range mws {
		if _, ok := mw.(*khttp.CompressionHandler); ok {
			continue
		}
		kept = append(kept, mw)
	}
	mws = kept
	for i, mw := range mws {
		if _, ok := mw.(*khttp.RetryHandler); ok {
			if retries < 0 {
				retries = 0
			}
			mws[i] = khttp.NewRetryHandlerWithOptions(khttp.RetryHandlerOptions{
				MaxRetries:   retries,
				DelaySeconds: 1,
				ShouldRetry: func(delay time.Duration, n int, _ *http.Request, _ *http.Response) bool {
					return retries > 0 && delay <= maxAfter
				},
			})
		}
	}
	var parent http.RoundTripper = http.DefaultTransport
	if c.HTTPClient.Transport != nil {
		parent = c.HTTPClient.Transport
	}
	hc := &http.Client{
		Transport: khttp.NewCustomTransportWithParentTransport(parent, mws...),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: c.HTTPClient.Timeout,
	}
	// The SDK registers its default serialisers in package-level registries
	// of kiota while it builds an adapter and a client, without a lock: two
	// clients built at once race (seen with -race). Build them one at a time.
	sdkInit.Lock()
	defer sdkInit.Unlock()
	adapter, err := msgraphsdk.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		return nil, nil, fmt.Errorf("graph adapter: %w", err)
	}
	adapter.SetBaseUrl(c.GraphURL)
	return msgraphsdk.NewGraphServiceClient(adapter), cred, nil
}

// sdkInit serialises the construction of Graph clients (see NewGraphClient).
// It guards the SDK's own global state, not ours.
var sdkInit sync.Mutex

// BearerClient returns an HTTP client that adds a token for scope to every request
// (for the Management Activity API, which has no Go SDK).
func BearerClient(c Credentials, cred azcore.TokenCredential, scope string) *http.Client {
	c = c.withDefaults()
	base := c.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Timeout: c.HTTPClient.Timeout, Transport: &bearer{base: base, cred: cred, scope: scope}}
}

type bearer struct {
	base  http.RoundTripper
	cred  azcore.TokenCredential
	scope string
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := b.cred.GetToken(r.Context(), policy.TokenRequestOptions{Scopes: []string{b.scope}})
	if err != nil {
		return nil, fmt.Errorf("token for %s: %w", b.scope, err)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok.Token)
	return b.base.RoundTrip(r)
}

// Token fetches one token (used by doctor and readiness checks).
func Token(ctx context.Context, cred azcore.TokenCredential, scope string) (string, time.Time, error) {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return "", time.Time{}, err
	}
	return tok.Token, tok.ExpiresOn, nil
}

// scrub removes the secret from an error message should a library ever echo it.
func scrub(err error, c Credentials) error {
	if err == nil || c.ClientSecret == "" {
		return err
	}
	if strings.Contains(err.Error(), c.ClientSecret) {
		return errors.New(strings.ReplaceAll(err.Error(), c.ClientSecret, "[redacted]"))
	}
	return err
}
