package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/feeds"
)

//go:embed static
var staticFS embed.FS

// Defaults.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	// loginTimeout bounds the time between starting a sign-in and coming back.
	loginTimeout = 10 * time.Minute
	maxSessions  = 10000
	maxLogins    = 10000
	// SessionCookie and LoginCookie name the cookies.
	SessionCookie = "responder_session"
	LoginCookie   = "responder_login"
)

// PlaybookStatus is the loaded playbook set as the engine reports it.
type PlaybookStatus struct {
	Loaded     []string
	LastReload time.Time
	LastError  string // the last refused reload ("" after a good one)
	Refused    int    // reloads refused since start
}

// Config wires a Console.
type Config struct {
	// Tenant is the tenant id; LoginURL the authority host (the engine's,
	// e.g. https://login.microsoftonline.com); ClientID and ClientSecret the
	// app registration the console signs people in with (the engine's own
	// app with a Web redirect URI, or a separate one).
	Tenant, LoginURL, ClientID, ClientSecret string
	// RedirectURL is this console's callback, registered in the app
	// (http://127.0.0.1:9464/auth/callback by default).
	RedirectURL string
	// HTTPClient reaches the authority (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Conn is a NATS connection authenticated with Key, the console's key,
	// which the analysts file (or the engine) trusts as a console.
	Conn *nats.Conn
	Key  nkeys.KeyPair
	// Directory returns the analysts directory in force (the engine's).
	Directory func() *analyst.Directory
	// Audit records refusals the console itself decides (a POST without
	// its CSRF token, a sign-in by someone not in the analysts file).
	Audit interface {
		Append(ctx context.Context, r audit.Record) (audit.Record, error)
	}
	// Feeds and Playbooks feed the status page (nil: not shown).
	Feeds     func(ctx context.Context) ([]feeds.StatusLine, error)
	Playbooks func() PlaybookStatus
	// VerifyChain checks the audit chain for the timeline's verification
	// state (nil: not shown). Its result is cached for ChainEvery.
	VerifyChain func(ctx context.Context) (audit.VerifyResult, error)
	ChainEvery  time.Duration
	// Hosts are host names the console answers to besides IP literals and
	// localhost (any other Host header: 421, against DNS rebinding).
	Hosts []string
	// IdleTimeout and AbsoluteTimeout end sessions (defaults 30 min, 12 h).
	IdleTimeout, AbsoluteTimeout time.Duration
	// Poll is how often the event stream looks for news (default 2s).
	Poll time.Duration
	// ActTimeout bounds the wait for an action's outcome (default 60s).
	ActTimeout time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Console serves the pages. Create it with New.
type Console struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	pages  map[string]*template.Template
	pub    string
	oidc   *oidcClient
	mu     sync.Mutex
	sess   map[string]*session // by sha256 of the cookie value
	logins map[string]*login   // by state
	// refusals bounds the audit records of refusals (a page anywhere on the
	// web can make a browser POST here): RefusalsPerMinute a minute, the
	// rest counted into the next one written.
	refusals struct {
		sync.Mutex
		window        time.Time
		told, dropped int
	}
	chain struct {
		sync.Mutex
		at  time.Time
		res audit.VerifyResult
		err error
	}
}

// session is one signed-in person.
type session struct {
	key            string // sha256 of the cookie value
	csrf           string
	oid, upn, name string
	tokenID        string
	groups         []string
	created, seen  time.Time
	// flash is a one-line message for the next page.
	flash string
}

// login is a sign-in in progress.
type login struct {
	nonce, verifier, next string
	created               time.Time
}

// New checks the configuration and builds the console. It discovers the
// authority lazily (at the first sign-in), so a console starts while the
// identity provider is unreachable.
func New(cfg Config) (*Console, error) {
	if cfg.Tenant == "" || cfg.LoginURL == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("console: needs the tenant, login URL, client id and redirect URL")
	}
	if cfg.Conn == nil || cfg.Key == nil || cfg.Directory == nil {
		return nil, errors.New("console: needs a NATS connection, the console key and the analysts directory")
	}
	ru, err := url.Parse(cfg.RedirectURL)
	if err != nil || (ru.Scheme != "https" && ru.Scheme != "http") || ru.Host == "" {
		return nil, fmt.Errorf("console: redirect URL %q: want http(s)://host[:port]/auth/callback", cfg.RedirectURL)
	}
	if ru.Scheme == "http" {
		if h := ru.Hostname(); h != "localhost" && !isLoopback(h) {
			return nil, fmt.Errorf("console: redirect URL %q: plain http only on loopback (Entra ID accepts http:// redirect URIs only for localhost)", cfg.RedirectURL)
		}
	}
	if ru.Path != "/auth/callback" {
		return nil, fmt.Errorf("console: redirect URL %q must end in /auth/callback", cfg.RedirectURL)
	}
	pub, err := cfg.Key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("console: key: %w", err)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AbsoluteTimeout <= 0 {
		cfg.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.ActTimeout <= 0 {
		cfg.ActTimeout = 60 * time.Second
	}
	if cfg.ChainEvery <= 0 {
		cfg.ChainEvery = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With("part", "console"), pub: pub, sess: map[string]*session{}, logins: map[string]*login{}}
	c.oidc = newOIDCClient(cfg)
	c.pages = parsePages()
	c.routes()
	return c, nil
}

// ServeHTTP serves the console behind its host check and security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.hostAllowed(r.Host) {
		http.Error(w, "misdirected request: this host name is not one the console answers to (see --ops-hosts)", http.StatusMisdirectedRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin:
	// null" on the console's own POSTs, which the CSRF check refuses.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", c.home)
	m.HandleFunc("GET /signin", c.signinPage)
	m.HandleFunc("GET /login", c.startLogin)
	m.HandleFunc("GET /auth/callback", c.callback)
	m.HandleFunc("POST /logout", c.post(c.logout))
	m.HandleFunc("GET /approvals", c.page(c.approvals))
	m.HandleFunc("POST /approvals/{id}/{op}", c.post(c.decide))
	m.HandleFunc("GET /audit", c.page(c.auditPage))
	m.HandleFunc("GET /requests/{id}", c.page(c.requestPage))
	m.HandleFunc("POST /requests/{id}/undo", c.post(c.undo))
	m.HandleFunc("GET /act", c.page(c.actPage))
	m.HandleFunc("POST /act", c.post(c.act))
	m.HandleFunc("GET /status", c.page(c.statusPage))
	m.HandleFunc("GET /events", c.page(c.events))
	c.mux = m
}

func isLoopback(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// hostAllowed: IP literals, localhost and the configured names (DNS
// rebinding: a page that rebinds its own name to this address gets 421).
func (c *Console) hostAllowed(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	if net.ParseIP(h) != nil || strings.EqualFold(h, "localhost") {
		return true
	}
	return slices.ContainsFunc(c.cfg.Hosts, func(s string) bool { return strings.EqualFold(s, h) })
}

func randToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// newSession stores a session and returns the cookie value.
func (c *Console) newSession(s *session) string {
	v := randToken()
	s.key, s.csrf = hashKey(v), randToken()
	now := c.cfg.Now()
	s.created, s.seen = now, now
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gcLocked(now)
	if len(c.sess) >= maxSessions {
		// Drop the oldest: a flood of sign-ins cannot grow memory without bound.
		var oldest *session
		for _, x := range c.sess {
			if oldest == nil || x.seen.Before(oldest.seen) {
				oldest = x
			}
		}
		delete(c.sess, oldest.key)
	}
	c.sess[s.key] = s
	return v
}

func (c *Console) gcLocked(now time.Time) {
	for k, s := range c.sess {
		if now.Sub(s.seen) > c.cfg.IdleTimeout || now.Sub(s.created) > c.cfg.AbsoluteTimeout {
			delete(c.sess, k)
		}
	}
	for k, l := range c.logins {
		if now.Sub(l.created) > loginTimeout {
			delete(c.logins, k)
		}
	}
}

// session returns the live session of r (and refreshes its idle timer).
func (c *Console) session(r *http.Request) (*session, bool) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, false
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sess[hashKey(ck.Value)]
	if !ok {
		return nil, false
	}
	if now.Sub(s.seen) > c.cfg.IdleTimeout || now.Sub(s.created) > c.cfg.AbsoluteTimeout {
		delete(c.sess, s.key)
		return nil, false
	}
	s.seen = now
	cp := *s
	return &cp, true
}

func (c *Console) dropSession(key string) {
	c.mu.Lock()
	delete(c.sess, key)
	c.mu.Unlock()
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int, same http.SameSite) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: same})
}

// who is the signed-in person as the analysts file gives them now.
func (c *Console) who(s *session) (analyst.Analyst, bool) {
	return c.cfg.Directory().Person(s.oid, s.upn, s.groups)
}

// actor is how requests and commands name the person.
func (c *Console) actor(s *session, p analyst.Analyst) audit.Actor {
	return audit.Actor{Kind: "analyst", Name: p.Name, KeyID: c.pub, EntraOID: s.oid, UPN: s.upn, TokenID: s.tokenID, Groups: strings.Join(p.Groups, " ")}
}

// view is what every page template gets.
type view struct {
	Title   string
	Person  analyst.Analyst
	Session *session
	CSRF    string
	Nav     string
	Data    any
	Flash   string
	Error   string
}

// handler with a signed-in person in the analysts file.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst)

// page requires a session and a person the analysts file lists.
func (c *Console) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r)
		if !ok {
			if r.URL.Path == "/events" {
				http.Error(w, "signed out", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		p, ok := c.who(s)
		if !ok {
			c.forbidden(w, r, s)
			return
		}
		fn(w, r, s, p)
	}
}

// post is page plus the CSRF check: the form's token must be the session's,
// and an Origin header, when sent, must be this origin. A refusal is audited.
func (c *Console) post(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		s, signedIn := c.session(r)
		token := r.PostFormValue("csrf")
		originOK := true
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			originOK = err == nil && strings.EqualFold(u.Host, r.Host)
		}
		if !signedIn || token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) != 1 || !originOK {
			c.refuseCSRF(w, r, s)
			return
		}
		p, ok := c.who(s)
		if !ok {
			c.forbidden(w, r, s)
			return
		}
		fn(w, r, s, p)
	}
}

func (c *Console) refuseCSRF(w http.ResponseWriter, r *http.Request, s *session) {
	actor := audit.Actor{Kind: "unknown", Name: "unknown"}
	if s != nil {
		actor = audit.Actor{Kind: "analyst", Name: s.upn, KeyID: c.pub, EntraOID: s.oid, UPN: s.upn, TokenID: s.tokenID}
	}
	detail := fmt.Sprintf("console: %s %s refused: no valid CSRF token for a signed-in session (or a cross-origin Origin %q); nothing was done", r.Method, r.URL.Path, r.Header.Get("Origin"))
	c.record(r.Context(), audit.Record{TenantID: c.cfg.Tenant, Action: "console", Outcome: audit.Rejected, Actor: actor, Detail: detail})
	c.log.Warn("console: POST refused (CSRF)", "path", r.URL.Path, "signed_in", s != nil)
	c.renderStatus(w, http.StatusForbidden, "error", view{Title: "Refused", Error: "This form was not sent from a page of this console (its security token is missing or wrong). Nothing was done; the attempt is in the audit trail. Reload the page and try again."})
}

// RefusalsPerMinute bounds the refusals the console audits each minute.
const RefusalsPerMinute = 60

// record audits a refusal, at most RefusalsPerMinute a minute.
func (c *Console) record(ctx context.Context, rec audit.Record) {
	if c.cfg.Audit == nil {
		return
	}
	now := c.cfg.Now()
	c.refusals.Lock()
	if now.Sub(c.refusals.window) >= time.Minute {
		c.refusals.window, c.refusals.told = now, 0
	}
	if c.refusals.told >= RefusalsPerMinute {
		c.refusals.dropped++
		c.refusals.Unlock()
		return
	}
	c.refusals.told++
	if n := c.refusals.dropped; n > 0 {
		rec.Detail += fmt.Sprintf(" (and %d more refusals not recorded one by one: over %d a minute)", n, RefusalsPerMinute)
		c.refusals.dropped = 0
	}
	c.refusals.Unlock()
	if _, err := c.cfg.Audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		c.log.Error("console: audit", "err", err)
	}
}

// forbidden is the 403 page for a person the analysts file does not list.
func (c *Console) forbidden(w http.ResponseWriter, _ *http.Request, s *session) {
	c.renderStatus(w, http.StatusForbidden, "forbidden", view{Title: "Not allowed", Session: s, Data: s})
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, "/approvals", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
