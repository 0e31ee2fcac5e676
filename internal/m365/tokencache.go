package m365

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// tokenRefreshMargin is how long before its expiry a cached token is handed
// to the credential again: azidentity (MSAL) refreshes a token in its last
// five minutes, so within that window every call goes to it and it decides.
// Source: MSAL's silent flow treats a cached access token expiring within
// five minutes as expired (microsoft-authentication-library-for-go v1.10,
// apps/internal/base/storage/items.go, AccessToken.Validate:
// "ExpiresOn.T.Before(time.Now().Add(5 * time.Minute))") and refreshes one
// past its refresh_on (apps/internal/base/base.go, AcquireTokenSilent).
const tokenRefreshMargin = 5 * time.Minute

// reusingCredential keeps the last token per request shape (tenant, scopes,
// CAE) and returns it while it is comfortably valid, so a busy executor does
// not run the credential's silent flow (MSAL cache lookup, locking, copying)
// for each of thousands of Graph calls. It never holds a token longer than
// the credential would: past RefreshOn, or in the last five minutes before
// ExpiresOn, the call goes to the credential. A call with claims (a CAE
// challenge after revocation) always goes to the credential, which fetches
// a new token, and that token replaces the cached one. Tokens are never
// logged. Safe for concurrent use.
type reusingCredential struct {
	inner azcore.TokenCredential
	now   func() time.Time

	mu     sync.RWMutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	tok   azcore.AccessToken
	until time.Time // handed out until then
}

func newReusingCredential(inner azcore.TokenCredential, now func() time.Time) *reusingCredential {
	if now == nil {
		now = time.Now
	}
	return &reusingCredential{inner: inner, now: now, tokens: map[string]cachedToken{}}
}

func tokenKey(o policy.TokenRequestOptions) string {
	cae := "0"
	if o.EnableCAE {
		cae = "1"
	}
	return o.TenantID + "\x00" + cae + "\x00" + strings.Join(o.Scopes, " ")
}

// GetToken implements azcore.TokenCredential.
func (c *reusingCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	key := tokenKey(o)
	if o.Claims == "" {
		c.mu.RLock()
		t, ok := c.tokens[key]
		c.mu.RUnlock()
		if ok && c.now().Before(t.until) {
			return t.tok, nil
		}
	}
	tok, err := c.inner.GetToken(ctx, o)
	if err != nil {
		return tok, err
	}
	until := tok.ExpiresOn.Add(-tokenRefreshMargin)
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(until) {
		until = tok.RefreshOn
	}
	c.mu.Lock()
	if until.After(c.now()) {
		c.tokens[key] = cachedToken{tok: tok, until: until}
	} else {
		delete(c.tokens, key)
	}
	c.mu.Unlock()
	return tok, nil
}
