package m365sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A token the emulator has verified once and cached is still checked on
// every request: a forged token (a payload granting more under the cached
// token's signature, or the signature altered) is refused and changes
// nothing, a token of another audience is refused though the Management API
// accepted (and cached) it, a revoked token is refused, and a cached token
// expires on the emulator's clock. Each refused attempt is on the wire log
// as a 401.
func TestCachedTokenIsStillCheckedOnEveryRequest(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: time.Hour})
	in := tn.Info()
	graph := in.GraphURL
	disable := `{"accountEnabled":false}`
	aliceEnabled := func() bool {
		u, ok := tn.User(AliceID)
		return ok && u.AccountEnabled
	}
	refused := func(name, tok, want string) {
		t.Helper()
		tn.ResetWireLog()
		resp, body := do(t, tn, "PATCH", graph+"/users/"+AliceID, tok, disable)
		if resp.StatusCode != 401 || !strings.Contains(body, "InvalidAuthenticationToken") || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s, want 401 %q", name, resp.StatusCode, body, want)
		}
		if !aliceEnabled() {
			t.Fatalf("%s: the user was disabled", name)
		}
		wl := tn.WireLog()
		if len(wl) != 1 || wl[0].Status != 401 || wl[0].Method != "PATCH" {
			t.Fatalf("%s: wire log %+v, want the refused PATCH as 401", name, wl)
		}
	}

	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	if resp, body := do(t, tn, "GET", graph+"/users/"+AliceID, tok, ""); resp.StatusCode != 200 {
		t.Fatalf("first use: %d %s", resp.StatusCode, body)
	}
	if tn.tokens.get(tok) == nil {
		t.Fatal("a verified token is not cached")
	}

	// Forged: the cached token's header and signature around a payload that
	// claims another application with every role.
	parts := strings.Split(tok, ".")
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(pb, &c); err != nil {
		t.Fatal(err)
	}
	c["appid"] = "11111111-2222-3333-4444-555555555555"
	c["roles"] = []string{"User.ReadWrite.All", "Directory.ReadWrite.All"}
	forgedPayload, _ := json.Marshal(c)
	refused("forged payload", parts[0]+"."+base64.RawURLEncoding.EncodeToString(forgedPayload)+"."+parts[2], "Invalid signature")
	// The signature altered in its first character.
	sig := []byte(parts[2])
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	refused("altered signature", parts[0]+"."+parts[1]+"."+string(sig), "Invalid signature")
	refused("token with a suffix", tok+"A", "")

	// Another audience: the Management API accepts (and caches) its token;
	// Graph refuses it.
	mtok := bearer(t, tn, "https://manage.office.com/.default")
	if resp, body := do(t, tn, "GET", in.ManageURL+"/"+in.TenantID+"/activity/feed/subscriptions/list", mtok, ""); resp.StatusCode != 200 {
		t.Fatalf("management API: %d %s", resp.StatusCode, body)
	}
	if tn.tokens.get(mtok) == nil {
		t.Fatal("the management token is not cached")
	}
	refused("management token on Graph", mtok, "Invalid audience")

	// Revoked (ExpireTokens): the cached token is refused.
	tn.ExpireTokens()
	refused("revoked token", tok, "expired")

	// Expiry on the emulator's clock.
	tok2 := bearer(t, tn, "https://graph.microsoft.com/.default")
	if resp, body := do(t, tn, "GET", graph+"/users/"+AliceID, tok2, ""); resp.StatusCode != 200 {
		t.Fatalf("new token: %d %s", resp.StatusCode, body)
	}
	clk.Advance(61 * time.Minute)
	refused("expired cached token", tok2, "expired")
}

// The cache stays bounded: when full it drops expired tokens first, then
// everything.
func TestTokenCacheIsBounded(t *testing.T) {
	var c tokenCache
	now := time.Unix(1_800_000_000, 0)
	for i := range maxCachedTokens - 1 {
		c.put(fmt.Sprintf("expired-%d", i), &claims{Exp: now.Unix() - 1}, now)
	}
	c.put("live", &claims{Exp: now.Unix() + 3600}, now)
	c.put("one-more", &claims{Exp: now.Unix() + 3600}, now)
	if got := len(c.m); got != 2 || c.get("live") == nil || c.get("one-more") == nil {
		t.Fatalf("after a full cache of expired tokens: %d entries, live %v", got, c.get("live"))
	}
	for i := range 2 * maxCachedTokens {
		c.put(fmt.Sprintf("live-%d", i), &claims{Exp: now.Unix() + 3600}, now)
		if len(c.m) > maxCachedTokens {
			t.Fatalf("%d entries, bound %d", len(c.m), maxCachedTokens)
		}
	}
}
