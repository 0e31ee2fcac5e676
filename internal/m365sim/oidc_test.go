package m365sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// signIn posts the account picker as upn and returns the redirect.
func signIn(t *testing.T, tn *Tenant, hc *http.Client, v url.Values) *http.Response {
	t.Helper()
	resp, err := hc.Post(tn.URL()+"/"+tn.opts.TenantID+"/oauth2/v2.0/authorize", "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestOIDCCodeFlow(t *testing.T) {
	tn, err := New(Options{Seed: SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	info := tn.Info()
	hc := tn.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	const redirect = "http://127.0.0.1:9464/auth/callback"
	verifier := "a-long-random-verifier-a-long-random-verifier-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	auth := url.Values{"client_id": {info.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"openid profile"},
		"state": {"s1"}, "nonce": {"n1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}

	// The account picker lists the tenant's users.
	resp, err := hc.Get(tn.URL() + "/" + info.TenantID + "/oauth2/v2.0/authorize?" + auth.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "carol@contoso.com") {
		t.Fatalf("account picker: %d", resp.StatusCode)
	}
	// An unregistered redirect URI is never redirected to (AADSTS50011).
	bad := cloneValues(auth)
	bad.Set("redirect_uri", "https://evil.example/cb")
	bad.Set("login_hint", "carol@contoso.com")
	if r := signIn(t, tn, hc, bad); r.StatusCode != http.StatusBadRequest || r.Header.Get("Location") != "" {
		t.Fatalf("unregistered redirect: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	code := func() string {
		v := cloneValues(auth)
		v.Set("login_hint", "carol@contoso.com")
		r := signIn(t, tn, hc, v)
		loc, _ := url.Parse(r.Header.Get("Location"))
		if r.StatusCode != http.StatusFound || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
			t.Fatalf("sign-in: %d %s", r.StatusCode, loc)
		}
		return loc.Query().Get("code")
	}
	redeem := func(code, verifier string) (int, map[string]any) {
		v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "client_id": {info.ClientID},
			"client_secret": {info.ClientSecret}, "code_verifier": {verifier}}
		r, err := hc.Post(tn.URL()+"/"+info.TenantID+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(r.Body).Decode(&out)
		return r.StatusCode, out
	}
	// A wrong PKCE verifier is refused (AADSTS501481), and burns the code.
	c := code()
	if st, out := redeem(c, "another-verifier-another-verifier-another-verifier-xx"); st != http.StatusBadRequest || !strings.Contains(out["error_description"].(string), "AADSTS501481") {
		t.Fatalf("wrong verifier: %d %v", st, out)
	}
	if st, _ := redeem(c, verifier); st != http.StatusBadRequest {
		t.Fatalf("a code is single use: %d", st)
	}
	// The right one gets an ID token naming carol, with the nonce.
	c = code()
	st, out := redeem(c, verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem: %d %v", st, out)
	}
	parts := strings.Split(out["id_token"].(string), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	if claims["oid"] != CarolID || claims["preferred_username"] != "carol@contoso.com" || claims["nonce"] != "n1" || claims["aud"] != info.ClientID ||
		claims["iss"] != tn.URL()+"/"+info.TenantID+"/v2.0" || claims["tid"] != info.TenantID || claims["uti"] == "" {
		t.Fatalf("claims %v", claims)
	}
	if st, _ := redeem(c, verifier); st != http.StatusBadRequest {
		t.Fatalf("redeemed twice: %d", st)
	}
	// A disabled account cannot sign in (AADSTS50057).
	tn.AddUser(User{ID: "d15ab1ed-0000-4000-8000-000000000001", UserPrincipalName: "gone@contoso.com", Disabled: true})
	v := cloneValues(auth)
	v.Set("login_hint", "gone@contoso.com")
	r := signIn(t, tn, hc, v)
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK || r.Header.Get("Location") != "" || !strings.Contains(string(body), "AADSTS50057") {
		t.Fatalf("disabled account: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
