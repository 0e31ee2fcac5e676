package m365sim

import (
	"sync"
	"time"
)

// maxCachedTokens bounds the verified-token cache. An app holds one token per
// resource until it nears expiry, so a handful of entries serve a whole run;
// the bound only matters against a client that mints token after token.
const maxCachedTokens = 1024

// tokenCache remembers bearer tokens whose signature and encoding were
// verified, keyed by the exact token string, so a client that reuses its
// token (as MSAL and azidentity do until it nears expiry) costs one HMAC and
// one JSON decode per token instead of per request.
//
// Only what cannot change while the token lives is cached: the signature
// (the tenant's signing key never changes) and the decoded claims. Every
// request still checks what Microsoft checks on each call: the lifetime
// (exp/nbf against the clock, so a cached token expires on time), the
// audience, the issuer (tenant) and revocation (CAE), in authenticate.
// Source: "Validate tokens", https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens
// (signature, then the audience, issuer and lifetime claims), and
// https://learn.microsoft.com/entra/identity/conditional-access/concept-continuous-access-evaluation
// (a resource rejects a still-unexpired token once it learns of a revocation).
//
// A token that fails verification is never stored, so a forged token (any
// byte differing from an issued one) is a cache miss and is verified, and
// rejected, in full. The zero value is ready.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]*claims
}

// get returns the verified claims of tok, or nil.
func (c *tokenCache) get(tok string) *claims {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[tok]
}

// put remembers verified claims. When the cache is full it first drops the
// expired entries, then, if still full, everything (re-verifying is cheap).
func (c *tokenCache) put(tok string, cl *claims, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*claims{}
	}
	if len(c.m) >= maxCachedTokens {
		for k, v := range c.m {
			if now.Unix() >= v.Exp {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedTokens {
			clear(c.m)
		}
	}
	c.m[tok] = cl
}

// verifiedToken returns the claims of a bearer token whose signature holds,
// from the cache or by verifying it (parseToken). The claims are shared
// between requests: read them, never change them.
func (t *Tenant) verifiedToken(tok string) (*claims, error) {
	if c := t.tokens.get(tok); c != nil {
		return c, nil
	}
	c, err := t.parseToken(tok)
	if err != nil {
		return nil, err
	}
	t.tokens.put(tok, c, t.now())
	return c, nil
}
