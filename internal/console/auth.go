package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
)

// oidcClient discovers the tenant's authority once it is first needed.
type oidcClient struct {
	cfg      Config
	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
}

func newOIDCClient(cfg Config) *oidcClient { return &oidcClient{cfg: cfg} }

// Issuer is the tenant's v2.0 issuer: {authority}/{tenant}/v2.0, which is
// also where its discovery document lives
// (https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri).
func (o *oidcClient) Issuer() string {
	return strings.TrimRight(o.cfg.LoginURL, "/") + "/" + o.cfg.Tenant + "/v2.0"
}

func (o *oidcClient) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.cfg.HTTPClient)
}

func (o *oidcClient) ready(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), o.Issuer())
	if err != nil {
		return fmt.Errorf("console: OpenID discovery at %s: %w", o.Issuer(), err)
	}
	o.provider = p
	// go-oidc checks the signature against the keys the discovery document
	// names (jwks_uri), the issuer, the audience (our client id) and expiry.
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, SupportedSigningAlgs: []string{oidc.RS256}})
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // client_secret_post, as Entra ID documents
	o.oauth = oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: o.cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	return nil
}

// idClaims are the Entra ID token claims the console uses
// (https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference).
type idClaims struct {
	OID               string   `json:"oid"`
	TID               string   `json:"tid"`
	PreferredUsername string   `json:"preferred_username"`
	Name              string   `json:"name"`
	Nonce             string   `json:"nonce"`
	UTI               string   `json:"uti"`
	JTI               string   `json:"jti"`
	Groups            []string `json:"groups"`
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	c.render(w, "signin", view{Title: "Sign in", Data: map[string]string{"Next": next}})
}

// safeNext keeps a post-sign-in destination on this console.
func safeNext(s string) string {
	if s == "" || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n") {
		return "/approvals"
	}
	return s
}

func (c *Console) startLogin(w http.ResponseWriter, r *http.Request) {
	if !c.sameHost(r) {
		// Start on the host the identity provider returns to, or the login
		// cookie would be on another host than the callback.
		origin, _ := c.redirectOrigin()
		http.Redirect(w, r, origin+"/login?next="+url.QueryEscape(safeNext(r.URL.Query().Get("next"))), http.StatusFound)
		return
	}
	if err := c.oidc.ready(r.Context()); err != nil {
		c.log.Error("console: sign-in unavailable", "err", err)
		c.renderStatus(w, http.StatusBadGateway, "error", view{Title: "Sign-in unavailable", Error: "The identity provider could not be reached: " + err.Error()})
		return
	}
	state := randToken()
	l := &login{nonce: randToken(), verifier: oauth2.GenerateVerifier(), next: safeNext(r.URL.Query().Get("next")), created: c.cfg.Now()}
	c.mu.Lock()
	c.gcLocked(l.created)
	if len(c.logins) >= maxLogins {
		c.mu.Unlock()
		http.Error(w, "too many sign-ins in progress; try again in a few minutes", http.StatusServiceUnavailable)
		return
	}
	c.logins[state] = l
	c.mu.Unlock()
	// Lax, not Strict: the identity provider's redirect back is a cross-site
	// navigation, which carries Lax cookies and not Strict ones.
	c.setCookie(w, LoginCookie, state, int(loginTimeout.Seconds()), http.SameSiteLaxMode)
	u := c.oidc.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(l.verifier), oidc.Nonce(l.nonce))
	http.Redirect(w, r, u, http.StatusFound)
}

func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(status int, msg string) {
		c.renderStatus(w, status, "error", view{Title: "Sign-in failed", Error: msg})
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "The identity provider refused the sign-in: "+e+": "+q.Get("error_description"))
		return
	}
	state := q.Get("state")
	ck, err := r.Cookie(LoginCookie)
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		fail(http.StatusBadRequest, "This sign-in was not started from this browser (or it took longer than 10 minutes). Start again.")
		return
	}
	c.mu.Lock()
	l, ok := c.logins[state]
	delete(c.logins, state) // single use
	c.mu.Unlock()
	c.setCookie(w, LoginCookie, "", -1, http.SameSiteLaxMode)
	if !ok || c.cfg.Now().Sub(l.created) > loginTimeout {
		fail(http.StatusBadRequest, "This sign-in expired. Start again.")
		return
	}
	if err := c.oidc.ready(r.Context()); err != nil {
		fail(http.StatusBadGateway, err.Error())
		return
	}
	ctx := c.oidc.ctx(r.Context())
	tok, err := c.oidc.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		c.log.Warn("console: code exchange failed", "err", err)
		fail(http.StatusUnauthorized, "The sign-in could not be completed (code exchange refused).")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusUnauthorized, "The identity provider sent no ID token.")
		return
	}
	idt, err := c.oidc.verifier.Verify(ctx, raw)
	if err != nil {
		c.log.Warn("console: ID token refused", "err", err)
		fail(http.StatusUnauthorized, "The ID token did not verify.")
		return
	}
	var cl idClaims
	if err := idt.Claims(&cl); err != nil {
		fail(http.StatusUnauthorized, "The ID token's claims are unreadable.")
		return
	}
	if err := checkClaims(cl, l.nonce, c.cfg.Tenant); err != nil {
		c.log.Warn("console: ID token refused", "err", err)
		fail(http.StatusUnauthorized, "The ID token was refused: "+err.Error())
		return
	}
	tokenID := cl.UTI
	if tokenID == "" {
		tokenID = cl.JTI
	}
	s := &session{oid: strings.ToLower(cl.OID), upn: cl.PreferredUsername, name: cl.Name, tokenID: tokenID, groups: cl.Groups}
	if _, ok := c.who(s); !ok {
		c.record(r.Context(), audit.Record{TenantID: c.cfg.Tenant, Action: "console", Outcome: audit.Rejected,
			Actor:  audit.Actor{Kind: "person", Name: cl.PreferredUsername, EntraOID: s.oid, UPN: cl.PreferredUsername, TokenID: tokenID},
			Detail: "console: sign-in refused: this Entra identity is not in the analysts file"})
		c.forbidden(w, r, s)
		return
	}
	v := c.newSession(s)
	c.setCookie(w, SessionCookie, v, int(c.cfg.AbsoluteTimeout.Seconds()), http.SameSiteStrictMode)
	c.log.Info("console: signed in", "oid", s.oid, "upn", s.upn)
	// A page, not a redirect: the navigation that follows starts on this
	// site, so the browser sends the new SameSite=Strict cookie with it.
	c.render(w, "continue", view{Title: "Signed in", Data: l.next})
}

// checkClaims checks what go-oidc leaves to the application: the nonce this
// sign-in sent, the tenant, and that the person is named.
func checkClaims(cl idClaims, nonce, tenant string) error {
	switch {
	case cl.Nonce == "" || subtle.ConstantTimeCompare([]byte(cl.Nonce), []byte(nonce)) != 1:
		return errors.New("nonce does not match this sign-in")
	case !strings.EqualFold(cl.TID, tenant):
		return errors.New("issued for another tenant")
	case !analyst.ValidObjectID(cl.OID):
		return errors.New("no object id (oid)")
	case cl.UTI == "" && cl.JTI == "":
		return errors.New("no token identifier (uti)")
	}
	return nil
}

func (c *Console) logout(w http.ResponseWriter, _ *http.Request, s *session, _ analyst.Analyst) {
	c.dropSession(s.key)
	c.setCookie(w, SessionCookie, "", -1, http.SameSiteStrictMode)
	c.render(w, "signin", view{Title: "Signed out", Flash: "You are signed out.", Data: map[string]string{"Next": "/approvals"}})
}
