package m365sim

// The Microsoft identity platform's OpenID Connect sign-in for people: the
// authorization code flow with PKCE, as a web console uses it.
//
//   - GET /{tenant}/oauth2/v2.0/authorize shows a sign-in page listing the
//     tenant's users (instead of asking for a password); POST signs the chosen
//     user in and redirects to redirect_uri with code and state.
//     https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#request-an-authorization-code
//   - POST /{tenant}/oauth2/v2.0/token, grant_type=authorization_code: the
//     code (single use, 10 minutes), the same redirect_uri, the client's
//     credentials and the PKCE code_verifier (RFC 7636: S256 or plain).
//     https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#redeem-a-code-for-an-access-token
//   - GET /{tenant}/discovery/v2.0/keys: the JWKS that verifies ID tokens
//     (RSA, kid), https://learn.microsoft.com/en-us/entra/identity-platform/signing-key-rollover
//   - ID tokens: RS256, v2.0 claims aud (client id), iss
//     ({login}/{tenant}/v2.0), iat, nbf, exp, name, nonce, oid,
//     preferred_username, sub (pairwise per application), tid, uti, ver, and
//     groups (the user's group object ids),
//     https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
//
// Redirect URIs: Microsoft matches the registered URI, except that for
// http://localhost and http://127.0.0.1 the port is ignored
// (https://learn.microsoft.com/en-us/entra/identity-platform/reply-url#localhost-exceptions).
// The emulator's applications accept any loopback http:// redirect URI and
// the https:// URIs registered with AddRedirectURI.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// codeLifetime: authorization codes are short lived, about 10 minutes
// (v2-oauth2-auth-code-flow, "Successful response").
const codeLifetime = 10 * time.Minute

type authCode struct {
	clientID, redirectURI, challenge, method, nonce, userID string
	issued                                                  time.Time
}

// oidcState is the sign-in state of a tenant (its zero value is ready).
type oidcState struct {
	once      sync.Once
	key       *rsa.PrivateKey
	kid       string
	mu        sync.Mutex
	codes     map[string]*authCode
	redirects map[string][]string // client id (lower) -> registered https redirect URIs
	signIns   int
}

func (o *oidcState) init() {
	o.once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("m365sim: ID token key: %v", err))
		}
		o.key = k
		sum := sha256.Sum256(k.PublicKey.N.Bytes())
		o.kid = b64(sum[:12])
		o.codes = map[string]*authCode{}
		o.redirects = map[string][]string{}
	})
}

// AddRedirectURI registers a redirect URI for an application (App
// registrations → Authentication → Web → Redirect URIs).
func (t *Tenant) AddRedirectURI(clientID, uri string) {
	t.oidc.init()
	t.oidc.mu.Lock()
	defer t.oidc.mu.Unlock()
	k := strings.ToLower(clientID)
	t.oidc.redirects[k] = append(t.oidc.redirects[k], uri)
}

// SignIns counts the ID tokens issued (tests).
func (t *Tenant) SignIns() int {
	t.oidc.init()
	t.oidc.mu.Lock()
	defer t.oidc.mu.Unlock()
	return t.oidc.signIns
}

func (t *Tenant) redirectAllowed(clientID, uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || u.Fragment != "" || u.User != nil {
		return false
	}
	if u.Scheme == "http" {
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	t.oidc.mu.Lock()
	defer t.oidc.mu.Unlock()
	return slices.Contains(t.oidc.redirects[strings.ToLower(clientID)], uri)
}

// jwks answers the keys endpoint. Microsoft also publishes x5t and x5c
// (the signing certificate); the emulator signs with a bare key, so it gives
// kid, n and e only (RFC 7517 makes the certificate members optional).
func (t *Tenant) jwks() *resp {
	t.oidc.init()
	pub := t.oidc.key.PublicKey
	return jsonPlain(http.StatusOK, map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "use": "sig", "kid": t.oidc.kid,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
		"issuer": t.base + "/" + t.opts.TenantID + "/v2.0",
	}}})
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to your account</title>
<style>body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;margin:0}main{max-width:440px;margin:40px auto;background:#fff;padding:32px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600}button{display:block;width:100%;text-align:left;margin:6px 0;padding:10px;border:1px solid #ccc;background:#fff;font-size:15px;cursor:pointer}
button:hover,button:focus{background:#e6f0fa;outline:2px solid #0067b8}.upn{color:#555;font-size:13px}.err{color:#a80000}</style></head>
<body><main><p>Microsoft (emulated tenant)</p><h1>Pick an account</h1>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
{{range .Users}}<button type="submit" name="login_hint" value="{{.UserPrincipalName}}" id="user-{{.UserPrincipalName}}">{{.DisplayName}}<br><span class="upn">{{.UserPrincipalName}}</span></button>
{{end}}</form></main></body></html>`))

// authorize serves the sign-in page (GET) and signs the chosen user in (POST).
func (t *Tenant) authorize(r *req) *resp {
	t.oidc.init()
	params := r.query
	if r.method == http.MethodPost {
		form, err := url.ParseQuery(string(r.body))
		if err != nil {
			return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body could not be parsed.")
		}
		params = form
	}
	clientID, redirect := params.Get("client_id"), params.Get("redirect_uri")
	t.mu.Lock()
	app := t.st.apps[strings.ToLower(clientID)]
	t.mu.Unlock()
	if app == nil {
		return t.signInError(r, fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s'.", clientID, t.opts.TenantID))
	}
	// An unregistered redirect URI is never redirected to (AADSTS50011).
	if !t.redirectAllowed(clientID, redirect) {
		return t.signInError(r, fmt.Sprintf("AADSTS50011: The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", redirect, clientID))
	}
	fail := func(code, desc string) *resp {
		u, _ := url.Parse(redirect)
		q := u.Query()
		q.Set("error", code)
		q.Set("error_description", desc)
		if s := params.Get("state"); s != "" {
			q.Set("state", s)
		}
		u.RawQuery = q.Encode()
		res := newResp(http.StatusFound)
		res.hdr.Set("Location", u.String())
		return res
	}
	if params.Get("response_type") != "code" {
		return fail("unsupported_response_type", "AADSTS700054: response_type 'code' is the only one this emulator supports.")
	}
	if !slices.Contains(strings.Fields(params.Get("scope")), "openid") {
		return fail("invalid_request", "AADSTS900144: The request body must contain the following parameter: 'scope' with 'openid'.")
	}
	method := params.Get("code_challenge_method")
	if method == "" {
		method = "plain"
	}
	if method != "S256" && method != "plain" {
		return fail("invalid_request", "AADSTS501491: Invalid code_challenge_method.")
	}
	if r.method != http.MethodPost {
		return t.signInForm(params, "")
	}
	hint := params.Get("login_hint")
	t.mu.Lock()
	var user *userRec
	for _, id := range t.st.userOrder {
		if u := t.st.users[id]; u != nil && strings.EqualFold(u.UserPrincipalName, hint) {
			user = u
		}
	}
	var uid string
	enabled := false
	if user != nil {
		uid, enabled = user.ID, user.AccountEnabled
	}
	t.mu.Unlock()
	switch {
	case user == nil:
		return t.signInForm(params, "AADSTS50034: The user account does not exist in this directory.")
	case !enabled:
		// https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes (AADSTS50057)
		return t.signInForm(params, "AADSTS50057: The user account is disabled.")
	}
	code := b64(randBytes(32))
	t.oidc.mu.Lock()
	now := t.now()
	for k, c := range t.oidc.codes {
		if now.Sub(c.issued) > codeLifetime {
			delete(t.oidc.codes, k)
		}
	}
	t.oidc.codes[code] = &authCode{clientID: app.ClientID, redirectURI: redirect, challenge: params.Get("code_challenge"), method: method,
		nonce: params.Get("nonce"), userID: uid, issued: now}
	t.oidc.mu.Unlock()
	u, _ := url.Parse(redirect)
	q := u.Query()
	q.Set("code", code)
	if s := params.Get("state"); s != "" {
		q.Set("state", s)
	}
	q.Set("session_state", newGUID())
	u.RawQuery = q.Encode()
	res := newResp(http.StatusFound)
	res.hdr.Set("Location", u.String())
	return res
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func (t *Tenant) signInForm(params url.Values, errMsg string) *resp {
	keep := map[string]string{}
	for _, k := range []string{"client_id", "response_type", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "response_mode"} {
		if v := params.Get(k); v != "" {
			keep[k] = v
		}
	}
	t.mu.Lock()
	var users []User
	for _, id := range t.st.userOrder {
		if u := t.st.users[id]; u != nil && u.UserType != "Guest" && !strings.HasPrefix(u.UserPrincipalName, "svc-") {
			users = append(users, u.User)
		}
	}
	t.mu.Unlock()
	var b strings.Builder
	_ = signInPage.Execute(&b, map[string]any{"Params": keep, "Users": users, "Error": errMsg})
	res := newResp(http.StatusOK)
	res.hdr.Set("Content-Type", "text/html; charset=utf-8")
	res.hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *")
	res.body = []byte(b.String())
	return res
}

func (t *Tenant) signInError(r *req, msg string) *resp {
	res := newResp(http.StatusBadRequest)
	res.hdr.Set("Content-Type", "text/html; charset=utf-8")
	res.body = []byte("<!doctype html><title>Sign in</title><h1>Sorry, but we're having trouble signing you in.</h1><p>" + template.HTMLEscapeString(msg) + "</p><p>Request Id: " + r.reqID + "</p>")
	return res
}

// codeToken redeems an authorization code (token endpoint,
// grant_type=authorization_code).
func (t *Tenant) codeToken(r *req, form url.Values) *resp {
	t.oidc.init()
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if clientID == "" {
		if u, p, ok := basicAuth(r.hdr.Get("Authorization")); ok {
			clientID, secret = u, p
		}
	}
	t.mu.Lock()
	app := t.st.apps[strings.ToLower(clientID)]
	var a App
	if app != nil {
		a = *app
	}
	t.mu.Unlock()
	if app == nil {
		return t.loginError(r, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, t.opts.TenantID))
	}
	// A web app redeems codes with its credential (the confidential client).
	if a.ClientSecret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(a.ClientSecret)) != 1 {
		return t.loginError(r, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided.")
	}
	t.oidc.mu.Lock()
	c := t.oidc.codes[form.Get("code")]
	delete(t.oidc.codes, form.Get("code")) // single use, whatever happens next
	t.oidc.mu.Unlock()
	now := t.now()
	switch {
	case c == nil:
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
	case now.Sub(c.issued) > codeLifetime:
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity.")
	case !strings.EqualFold(c.clientID, clientID):
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 70000, "The provided value for the 'code' parameter is not valid. The code was issued to another client.")
	case c.redirectURI != form.Get("redirect_uri"):
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 50148, "The redirect_uri doesn't match the one in the authorization request.")
	case !pkceOK(c, form.Get("code_verifier")):
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	}
	t.mu.Lock()
	u := t.st.users[c.userID]
	var user User
	var groups []string
	if u != nil {
		user = u.User
		for _, g := range t.st.groups {
			if slices.Contains(g.Members, c.userID) {
				groups = append(groups, g.ID)
			}
		}
	}
	t.mu.Unlock()
	if u == nil || !user.AccountEnabled {
		return t.loginError(r, http.StatusBadRequest, "invalid_grant", 50057, "The user account is disabled.")
	}
	slices.Sort(groups)
	sub := sha256.Sum256([]byte("sub:" + strings.ToLower(a.ClientID) + ":" + user.ID))
	claims := map[string]any{
		"aud": a.ClientID, "iss": t.base + "/" + t.opts.TenantID + "/v2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"name": user.DisplayName, "oid": user.ID, "preferred_username": user.UserPrincipalName,
		"sub": b64(sub[:]), "tid": t.opts.TenantID, "uti": b64(randBytes(16)), "ver": "2.0",
		"rh": "0.emulated.",
	}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	if len(groups) > 0 {
		claims["groups"] = groups
	}
	idToken, err := t.signRS256(claims)
	if err != nil {
		return t.loginError(r, http.StatusInternalServerError, "server_error", 90000, "Could not sign the token.")
	}
	t.oidc.mu.Lock()
	t.oidc.signIns++
	t.oidc.mu.Unlock()
	return jsonPlain(http.StatusOK, map[string]any{
		"token_type": "Bearer", "scope": "openid profile email", "expires_in": 3600, "ext_expires_in": 3600,
		// The access token is for Microsoft Graph (the console does not use it).
		"access_token": t.signToken(claimsFor(user.ID, a.ClientID, t, now)),
		"id_token":     idToken,
	})
}

// claimsFor is a delegated Graph access token's claims (unused by Responder,
// present because Microsoft always returns one).
func claimsFor(userID, clientID string, t *Tenant, now time.Time) claims {
	return claims{Aud: graphResource, Iss: "https://sts.windows.net/" + t.opts.TenantID + "/", Iat: now.Unix(), Nbf: now.Unix(),
		Exp: now.Add(time.Hour).Unix(), AppID: clientID, Acr: "1", Idtyp: "user", Oid: userID, Sub: userID, Tid: t.opts.TenantID, Uti: newGUID(), Ver: "1.0"}
}

func pkceOK(c *authCode, verifier string) bool {
	if c.challenge == "" {
		return verifier == ""
	}
	if verifier == "" {
		return false
	}
	want := verifier
	if c.method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(c.challenge)) == 1
}

func (t *Tenant) signRS256(claims map[string]any) (string, error) {
	h, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": t.oidc.kid})
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	s := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(s))
	sig, err := rsa.SignPKCS1v15(rand.Reader, t.oidc.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return s + "." + b64(sig), nil
}
