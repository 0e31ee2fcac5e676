package m365

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/responder-sec/responder/internal/m365sim"
)

func simCredentials(t *testing.T, lifetime time.Duration) (*m365sim.Tenant, Credentials) {
	t.Helper()
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, TokenLifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	in := sim.Info()
	return sim, Credentials{TenantID: in.TenantID, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
		LoginURL: in.LoginURL, GraphURL: in.GraphURL, ManageURL: in.ManageURL, HTTPClient: sim.HTTPClient()}
}

// tokenRequests counts the token endpoint calls in the emulator's wire log.
func tokenRequests(sim *m365sim.Tenant) int {
	n := 0
	for _, w := range sim.WireLog() {
		if strings.Contains(w.Path, "/oauth2/v2.0/token") {
			n++
		}
	}
	return n
}

// The credential reuses its token per scope while it is comfortably valid,
// fetches a new one when a CAE challenge brings claims (and reuses that one
// afterwards), and keeps no token the credential itself would refresh.
func TestCredentialReusesItsTokenUntilRefreshIsDue(t *testing.T) {
	ctx := context.Background()
	sim, c := simCredentials(t, time.Hour)
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	graph := policy.TokenRequestOptions{Scopes: []string{c.GraphScope()}, EnableCAE: true}
	first, err := cred.GetToken(ctx, graph)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := cred.GetToken(ctx, graph)
		if err != nil {
			t.Fatal(err)
		}
		if again.Token != first.Token {
			t.Fatal("a valid token was not reused")
		}
	}
	if n := tokenRequests(sim); n != 1 {
		t.Fatalf("%d token requests for one scope, want 1", n)
	}
	// Another scope is another token.
	manage, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.ManageScope()}, EnableCAE: true})
	if err != nil {
		t.Fatal(err)
	}
	if manage.Token == first.Token {
		t.Fatal("the Graph token was handed out for the Management API")
	}

	// A CAE challenge (claims) always reaches the token service, and the new
	// token replaces the cached one.
	challenged := graph
	challenged.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + time.Now().Format("20060102150405") + `"}}}`
	before := tokenRequests(sim)
	fresh, err := cred.GetToken(ctx, challenged)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Token == first.Token || tokenRequests(sim) != before+1 {
		t.Fatalf("claims challenge: same token %t, token requests %d -> %d", fresh.Token == first.Token, before, tokenRequests(sim))
	}
	after, err := cred.GetToken(ctx, graph)
	if err != nil {
		t.Fatal(err)
	}
	if after.Token != fresh.Token {
		t.Fatal("after a challenge the revoked token is still handed out")
	}

	// Tokens that live less than the refresh margin are never held: every
	// call goes to the credential, which fetches anew.
	sim4, c4 := simCredentials(t, 4*time.Minute)
	cred4, err := c4.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	g4 := policy.TokenRequestOptions{Scopes: []string{c4.GraphScope()}, EnableCAE: true}
	for range 2 {
		if _, err := cred4.GetToken(ctx, g4); err != nil {
			t.Fatal(err)
		}
	}
	if n := tokenRequests(sim4); n != 2 {
		t.Fatalf("short-lived tokens: %d token requests for 2 calls, want 2", n)
	}
}
