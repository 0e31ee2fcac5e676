package m365sim

import (
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

const (
	defaultClientID = "0b7e5a3c-2d1f-4e8a-9c6b-5f4d3e2a1b0c"
	graphResource   = "https://graph.microsoft.com"
	graphAppID      = "00000003-0000-0000-c000-000000000000"
	manageResource  = "https://manage.office.com"
	manageAppID     = "c5393580-f805-4401-95e8-94b7a6ef2fc2"
)

// App is an application registration with its granted application roles.
type App struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret,omitempty"`
	CertPEM      []byte   `json:"cert_pem,omitempty"` // certificate(s) that verify client assertions
	Roles        []string `json:"roles"`
	DisplayName  string   `json:"display_name,omitempty"`
	// DirectoryRoles are Entra directory roles held by the app's service
	// principal (e.g. "Privileged Authentication Administrator"); Microsoft
	// requires one to change sensitive properties of privileged users.
	DirectoryRoles []string `json:"directory_roles,omitempty"`
}

// responderRoles are the application permissions the default app holds
// besides those of the action catalogue: the feeds' and the broader
// alternatives some tests take away to prove a narrower grant suffices.
var responderRoles = []string{
	"User.Read.All", "User.ReadWrite.All", "User.EnableDisableAccount.All", "User.RevokeSessions.All",
	"User-PasswordProfile.ReadWrite.All", "Directory.Read.All", "Domain.Read.All",
	"RoleManagement.Read.Directory", "MailboxSettings.ReadWrite", "Mail.ReadWrite",
	"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess", "AuditLog.Read.All",
	"IdentityRiskEvent.Read.All", "IdentityRiskyUser.ReadWrite.All", "SecurityAlert.Read.All",
	"ActivityFeed.Read", "ActivityFeed.ReadDlp",
	"Exchange.ManageAsApp",
	"Machine.Isolate", "Machine.Read.All", "Ti.ReadWrite.All",
}

// ResponderRoles returns the permissions granted to the default app: the
// ones above and every permission the README's table (the action catalogue's
// least-privileged permission of each clause) tells an administrator to
// grant, so that the sandbox tenant is set up as the README says and a new
// action's permission needs no line here.
func ResponderRoles() []string {
	out := slices.Clone(responderRoles)
	for _, s := range actions.Specs() {
		for _, p := range s.Least() {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// AddApp registers (or replaces) an application. Empty ClientID gets a GUID.
func (t *Tenant) AddApp(a App) App {
	if a.ClientID == "" {
		a.ClientID = newGUID()
	}
	a.Roles = slices.Clone(a.Roles)
	a.CertPEM = slices.Clone(a.CertPEM)
	t.mu.Lock()
	t.st.apps[strings.ToLower(a.ClientID)] = &a
	t.mu.Unlock()
	return a
}

// SetRoles replaces an app's granted roles. As in Entra ID, tokens already
// issued keep their roles; call ExpireTokens to force new ones.
func (t *Tenant) SetRoles(clientID string, roles []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := t.st.apps[strings.ToLower(clientID)]; a != nil {
		a.Roles = slices.Clone(roles)
	}
}

// ExpireTokens invalidates every access token issued so far (the "token
// expiry in the middle of a run" fault). Tokens requested with the CAE
// capability get a claims challenge, which the Graph SDK answers by fetching a
// new token; others get a plain 401.
func (t *Tenant) ExpireTokens() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.st.issued {
		t.st.revoked[id] = true
	}
}

type claims struct {
	Aud   string   `json:"aud"`
	Iss   string   `json:"iss"`
	Iat   int64    `json:"iat"`
	Nbf   int64    `json:"nbf"`
	Exp   int64    `json:"exp"`
	AppID string   `json:"appid"`
	Acr   string   `json:"appidacr"`
	Idp   string   `json:"idp"`
	Idtyp string   `json:"idtyp"`
	Oid   string   `json:"oid"`
	Roles []string `json:"roles,omitempty"`
	Sub   string   `json:"sub"`
	Tid   string   `json:"tid"`
	Uti   string   `json:"uti"`
	Ver   string   `json:"ver"`
	XmsCC []string `json:"xms_cc,omitempty"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (t *Tenant) signToken(c claims) string {
	h, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "HS256", "kid": "m365sim"})
	p, _ := json.Marshal(c)
	s := b64(h) + "." + b64(p)
	m := hmac.New(sha256.New, t.sigKey)
	m.Write([]byte(s))
	return s + "." + b64(m.Sum(nil))
}

func (t *Tenant) parseToken(tok string) (*claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("CompactToken parsing failed with error code: 80049217")
	}
	m := hmac.New(sha256.New, t.sigKey)
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || subtle.ConstantTimeCompare(sig, m.Sum(nil)) != 1 {
		return nil, errors.New("Access token validation failure. Invalid signature.")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("CompactToken parsing failed with error code: 80049217")
	}
	var c claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, errors.New("CompactToken parsing failed with error code: 80049217")
	}
	return &c, nil
}

// ---- login endpoints ----

func (t *Tenant) login(r *req) *resp {
	s := r.segs
	tenant := s[0]
	if !strings.EqualFold(tenant, t.opts.TenantID) && !strings.EqualFold(tenant, "contoso.onmicrosoft.com") {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
	}
	low := strings.ToLower(strings.Join(s[1:], "/"))
	switch {
	case low == "v2.0/.well-known/openid-configuration" && r.method == http.MethodGet:
		return jsonPlain(http.StatusOK, t.oidcDoc())
	case low == "discovery/v2.0/keys" && r.method == http.MethodGet:
		return t.jwks() // oidc.go
	case low == "oauth2/v2.0/authorize" && (r.method == http.MethodGet || r.method == http.MethodPost):
		return t.authorize(r) // oidc.go
	case low == "oauth2/v2.0/token":
		if r.method != http.MethodPost {
			return t.loginError(r, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		}
		return t.token(r)
	}
	res := newResp(http.StatusNotFound)
	res.hdr.Set("Content-Type", "text/html; charset=utf-8")
	res.body = []byte("<html><body>Not Found</body></html>")
	return res
}

func jsonPlain(status int, v any) *resp {
	res := newResp(status)
	b, _ := json.Marshal(v)
	res.body = b
	res.hdr.Set("Content-Type", "application/json; charset=utf-8")
	return res
}

func (t *Tenant) oidcDoc() map[string]any {
	base := t.base + "/" + t.opts.TenantID
	return map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     t.base + "/oidc/userinfo",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "tid", "ver", "roles"},
		"kerberos_endpoint":                     base + "/kerberos",
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
		"rbac_url":                              "https://pas.windows.net",
	}
}

func (t *Tenant) token(r *req) *resp {
	ct := strings.ToLower(r.hdr.Get("Content-Type"))
	if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
	}
	form, err := url.ParseQuery(string(r.body))
	if err != nil {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
	}
	if gt := form.Get("grant_type"); gt == "" {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
	} else if gt == "authorization_code" {
		return t.codeToken(r, form) // oidc.go
	} else if gt != "client_credentials" {
		return t.loginError(r, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'.")
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		if u, p, ok := basicAuth(r.hdr.Get("Authorization")); ok {
			clientID = u
			form.Set("client_secret", p)
		}
	}
	if clientID == "" {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
	}
	t.mu.Lock()
	app := t.st.apps[strings.ToLower(clientID)]
	var a App
	if app != nil {
		a = *app
	}
	t.mu.Unlock()
	if app == nil {
		return t.loginError(r, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, t.opts.TenantID))
	}
	switch {
	case form.Get("client_secret") != "":
		if a.ClientSecret == "" || subtle.ConstantTimeCompare([]byte(form.Get("client_secret")), []byte(a.ClientSecret)) != 1 {
			return t.loginError(r, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", a.ClientID))
		}
	case form.Get("client_assertion") != "":
		if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			return t.loginError(r, http.StatusBadRequest, "invalid_request", 50027, "Invalid JWT token. The client assertion type is not supported.")
		}
		if code, msg := t.verifyAssertion(form.Get("client_assertion"), a); code != 0 {
			return t.loginError(r, http.StatusUnauthorized, "invalid_client", code, msg)
		}
	default:
		return t.loginError(r, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
	// Scope: exactly one resource with /.default (plus OIDC scopes, ignored).
	var resource string
	for _, s := range strings.Fields(form.Get("scope")) {
		switch s {
		case "openid", "offline_access", "profile", "email":
			continue
		}
		if !strings.HasSuffix(s, "/.default") {
			return t.loginError(r, http.StatusBadRequest, "invalid_scope", 1002012,
				fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", s))
		}
		res := strings.TrimSuffix(s, "/.default")
		switch strings.TrimRight(strings.ToLower(res), "/") {
		case graphResource, graphAppID, "https://graph.microsoft.com/v1.0":
			resource = graphResource
		case manageResource, manageAppID:
			resource = manageResource
		case exoResource, exoAppID:
			resource = exoResource
		case defenderResource, defenderAppID, "https://api.security.microsoft.com", "https://securitycenter.onmicrosoft.com/windowsatpservice":
			// The WindowsDefenderATP app: its App ID URI, app id, and the
			// newer host and older URI Microsoft's samples use.
			resource = defenderResource
		default:
			if t.hostedOrigin(res) { // hosted.go
				resource = strings.TrimRight(strings.ToLower(res), "/")
				continue
			}
			return t.loginError(r, http.StatusBadRequest, "invalid_resource", 500011,
				fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", res, t.opts.TenantID))
		}
	}
	if resource == "" {
		return t.loginError(r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
	}
	now := t.now()
	c := claims{
		Aud: resource, Iss: "https://sts.windows.net/" + t.opts.TenantID + "/",
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(t.opts.TokenLifetime).Unix(),
		AppID: a.ClientID, Acr: "1", Idp: "https://sts.windows.net/" + t.opts.TenantID + "/", Idtyp: "app",
		Oid: spID(a.ClientID), Sub: spID(a.ClientID), Tid: t.opts.TenantID, Uti: newGUID(), Ver: "1.0",
	}
	if form.Get("client_assertion") != "" {
		c.Acr = "2"
	}
	for _, role := range a.Roles {
		if roleResource(role) == resource || t.hostedOrigin(resource) { // hosted.go: every API of the origin
			c.Roles = append(c.Roles, role)
		}
	}
	if cl := form.Get("claims"); strings.Contains(cl, "CP1") {
		c.XmsCC = []string{"CP1"}
	}
	t.mu.Lock()
	t.st.issued[c.Uti] = a.ClientID
	t.mu.Unlock()
	secs := int(t.opts.TokenLifetime / time.Second)
	return jsonPlain(http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": t.signToken(c),
	})
}

// roleResource is the resource an application permission belongs to.
func roleResource(role string) string {
	switch {
	case strings.HasPrefix(role, "ActivityFeed.") || role == "ServiceHealth.Read":
		return manageResource
	case strings.HasPrefix(role, "Exchange."):
		return exoResource
	case strings.HasPrefix(role, "Machine.") || strings.HasPrefix(role, "Ti."):
		return defenderResource
	}
	return graphResource
}

// spID derives a stable service principal object id from a client id.
func spID(clientID string) string {
	h := sha256.Sum256([]byte("sp:" + strings.ToLower(clientID)))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func basicAuth(h string) (string, string, bool) {
	const p = "Basic "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", "", false
	}
	d, err := base64.StdEncoding.DecodeString(h[len(p):])
	if err != nil {
		return "", "", false
	}
	u, pw, ok := strings.Cut(string(d), ":")
	if !ok {
		return "", "", false
	}
	uu, err1 := url.QueryUnescape(u)
	pp, err2 := url.QueryUnescape(pw)
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return uu, pp, true
}

// verifyAssertion checks a private_key_jwt client assertion (PS256 as sent by
// MSAL; RS256 also accepted, as Entra ID does) against the app's certificates.
// It returns an AADSTS code and message on failure.
func (t *Tenant) verifyAssertion(jwt string, a App) (int, string) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return 50027, "Invalid JWT token. Token format not valid."
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return 50027, "Invalid JWT token. Token format not valid."
	}
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var cl struct {
		Aud any    `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
		Nbf int64  `json:"nbf"`
	}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(pb, &cl) != nil {
		return 50027, "Invalid JWT token. Token format not valid."
	}
	var certs []*x509.Certificate
	rest := a.CertPEM
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				certs = append(certs, c)
			}
		}
	}
	var cert *x509.Certificate
	for _, c := range certs {
		s256 := sha256.Sum256(c.Raw)
		s1 := sha1.Sum(c.Raw)
		if thumbMatch(hdr.X5tS256, s256[:]) || thumbMatch(hdr.X5t, s1[:]) {
			cert = c
		}
	}
	if cert == nil {
		return 700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", firstNonEmpty(hdr.X5tS256, hdr.X5t), a.ClientID)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return 700027, "Client assertion failed signature validation."
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var verr error
	switch hdr.Alg {
	case "PS256":
		verr = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256})
	case "RS256":
		verr = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	default:
		return 5002738, fmt.Sprintf("Invalid JWT token. '%s' is not a supported signature algorithm.", hdr.Alg)
	}
	if verr != nil {
		return 700027, "Client assertion failed signature validation."
	}
	if !strings.EqualFold(cl.Iss, a.ClientID) || !strings.EqualFold(cl.Sub, a.ClientID) {
		return 700021, "Client assertion application identifier doesn't match 'client_id' parameter."
	}
	aud := fmt.Sprint(cl.Aud)
	if !strings.Contains(strings.ToLower(aud), "/oauth2/") && !strings.Contains(strings.ToLower(aud), strings.ToLower(t.opts.TenantID)) {
		return 700212, "No matching federated identity record found for presented assertion audience '" + aud + "'."
	}
	wall := time.Now()
	if cl.Exp == 0 || wall.After(time.Unix(cl.Exp, 0).Add(5*time.Minute)) {
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

// ---- resource token check ----

const wwwAuthGraph = `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`

// authenticate checks the bearer token for the request's service; nil = ok.
func (t *Tenant) authenticate(r *req, resource string) *resp {
	h := r.hdr.Get("Authorization")
	bearer := ""
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		bearer = strings.TrimSpace(h[7:])
	}
	fail := func(msg string, challenge string) *resp {
		if r.svc == svcExoAdmin {
			// Exchange answers with an empty body and a challenge.
			res := newResp(http.StatusUnauthorized)
			res.hdr.Set("WWW-Authenticate", wwwAuthExo)
			res.hdr.Set("x-ms-diagnostics", `2000003;reason="`+msg+`";error_category="invalid_token"`)
			return res
		}
		if r.svc == svcDefender {
			return defenderError(r, http.StatusUnauthorized, "Unauthorized", msg)
		}
		if r.svc == svcManage {
			res := newResp(http.StatusUnauthorized)
			res.body = []byte(`{"Message":"Authorization has been denied for this request."}`)
			res.hdr.Set("Content-Type", "application/json; charset=utf-8")
			res.hdr.Set("WWW-Authenticate", `Bearer realm="https://manage.office.com"`)
			return res
		}
		res := t.graphError(r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		res.hdr.Set("WWW-Authenticate", firstNonEmpty(challenge, wwwAuthGraph))
		return res
	}
	if bearer == "" {
		return fail("Access token is empty.", "")
	}
	// Verified once per token string (tokcache.go); lifetime, audience,
	// issuer and revocation are checked below on every request.
	c, err := t.verifiedToken(bearer)
	if err != nil {
		return fail(err.Error(), "")
	}
	r.tok = c
	if c.Aud != resource && !t.hostedOrigin(c.Aud) {
		return fail("Access token validation failure. Invalid audience.", "")
	}
	if c.Tid != t.opts.TenantID {
		return fail("Access token validation failure. Invalid issuer.", "")
	}
	now := t.now().Unix()
	if now >= c.Exp {
		return fail("Lifetime validation failed, the token is expired.", "")
	}
	if now+300 < c.Nbf {
		return fail("Lifetime validation failed, the token is not yet valid.", "")
	}
	t.mu.RLock()
	revoked := t.st.revoked[c.Uti]
	t.mu.RUnlock()
	if revoked {
		if len(c.XmsCC) > 0 && r.svc != svcManage && r.svc != svcExoAdmin {
			ch := fmt.Sprintf(`{"access_token":{"nbf":{"essential":true,"value":"%d"}}}`, t.now().Unix())
			return fail("Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp",
				wwwAuthGraph+`, error="insufficient_claims", claims="`+base64.StdEncoding.EncodeToString([]byte(ch))+`"`)
		}
		return fail("Lifetime validation failed, the token is expired.", "")
	}
	return nil
}

// perm is a route's permission requirement: any one of AnyOf, plus all of AllOf.
type perm struct {
	anyOf []string
	allOf []string
}

func anyOf(p ...string) perm { return perm{anyOf: p} }

// missing returns the permission to name when the token does not satisfy p.
func (p perm) missing(roles []string) string {
	for _, a := range p.allOf {
		if !slices.Contains(roles, a) {
			return a
		}
	}
	if len(p.anyOf) == 0 {
		return ""
	}
	for _, a := range p.anyOf {
		if slices.Contains(roles, a) {
			return ""
		}
	}
	return p.anyOf[0]
}

// forbidden is the 403 each service sends for a missing permission.
func (t *Tenant) forbidden(r *req, missing string) *resp {
	r.missingPerm = missing
	switch r.svc {
	case svcReports:
		return t.graphError(r, http.StatusForbidden, "Authentication_MSGraphPermissionMissing",
			"Calling principal does not have required MSGraph permissions "+missing)
	case svcExchange:
		return t.graphError(r, http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
	case svcCA:
		return t.graphError(r, http.StatusForbidden, "AccessDenied", "You cannot perform the requested operation, required scopes are missing in the token.")
	case svcIdP:
		return t.graphError(r, http.StatusForbidden, "Forbidden", "Caller does not have the required permission "+missing+".")
	case svcExoAdmin:
		return t.exoError(r, http.StatusForbidden, "Forbidden", fmt.Sprintf("The token does not hold the application permission %s.", missing), "")
	case svcDefender:
		return defenderError(r, http.StatusForbidden, "Forbidden", fmt.Sprintf("The application does not have any of the required application roles (%s) to access the resource.", missing))
	case svcManage:
		return manageError(http.StatusForbidden, "AF10001", fmt.Sprintf("The permission set (%s) sent in the request does not include the expected permission %s.", strings.Join(r.tok.Roles, ","), missing))
	}
	return t.graphError(r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

// thumbMatch compares a JWT thumbprint header (base64url per RFC 7515; MSAL
// sends standard base64) with a digest.
func thumbMatch(h string, sum []byte) bool {
	if h == "" {
		return false
	}
	return h == b64(sum) || h == base64.StdEncoding.EncodeToString(sum) || h == base64.RawStdEncoding.EncodeToString(sum)
}
