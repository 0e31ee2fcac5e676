package console

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
)

// AttachOptions say how `serve` and `demo --console` run the console.
type AttachOptions struct {
	// Key is the console key (analyst.EnsureConsoleKey), whose public key
	// the engine was configured to trust (engine.Config.ConsoleKey).
	Key nkeys.KeyPair
	// Credentials are the engine's (tenant, authority, HTTP client); the
	// console signs people in with ClientID and ClientSecret, which default
	// to the engine's own app registration.
	Credentials            m365.Credentials
	ClientID, ClientSecret string
	// OpsAddr is the operations address the console is served on;
	// RedirectURL defaults to http://OpsAddr/auth/callback.
	OpsAddr, RedirectURL string
	Hosts                []string
	// NATS is how the console connects to the engine's bus (the engine's
	// client URL and TLS settings; the identity is Key).
	NATS                         bus.ClientAuth
	IdleTimeout, AbsoluteTimeout time.Duration
	Logger                       *slog.Logger
}

// Attach builds the console for a running engine's process and mounts it on
// the engine's operations server (eng.SetConsole; call it before eng.Run).
// The returned func closes its NATS connection.
func Attach(eng *engine.Engine, o AttachOptions) (*Console, func(), error) {
	if o.ClientID == "" {
		o.ClientID = o.Credentials.ClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = o.Credentials.ClientSecret
	}
	if o.ClientSecret == "" {
		return nil, nil, fmt.Errorf("console: no client secret to redeem sign-in codes with (the engine uses a certificate): set --console-client-id and --console-client-secret (RESPONDER_CONSOLE_CLIENT_ID, RESPONDER_CONSOLE_CLIENT_SECRET) for the console's app registration, or --no-console")
	}
	if o.RedirectURL == "" {
		o.RedirectURL = "http://" + o.OpsAddr + "/auth/callback"
	}
	auth := o.NATS
	auth.Key = o.Key
	opts, err := auth.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	nc, err := nats.Connect(eng.Bus().ClientURL(), append(opts, nats.Name("responder-console"), nats.Timeout(5*time.Second), nats.MaxReconnects(-1))...)
	if err != nil {
		return nil, nil, fmt.Errorf("console: connect to the engine's NATS: %w", err)
	}
	login := o.Credentials.LoginURL
	if login == "" {
		login = "https://login.microsoftonline.com"
	}
	c, err := New(Config{
		Tenant: eng.Tenant(), LoginURL: login, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		RedirectURL: o.RedirectURL, HTTPClient: o.Credentials.HTTPClient, Conn: nc, Key: o.Key,
		Directory: eng.Directory, Audit: eng.Recorder(), Feeds: eng.FeedStatus,
		Playbooks: func() PlaybookStatus {
			names, at, lastErr, refused := eng.PlaybookReload()
			return PlaybookStatus{Loaded: names, LastReload: at, LastError: lastErr, Refused: refused}
		},
		VerifyChain: eng.VerifyChain, Hosts: o.Hosts,
		IdleTimeout: o.IdleTimeout, AbsoluteTimeout: o.AbsoluteTimeout, Logger: o.Logger,
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	eng.SetConsole(c)
	return c, nc.Close, nil
}

// RedirectOrigin is where sign-ins start, so the pre-sign-in cookie is set
// on the host the identity provider returns to.
func (c *Console) redirectOrigin() (string, bool) {
	i := strings.Index(c.cfg.RedirectURL, "/auth/callback")
	if i < 0 {
		return "", false
	}
	return c.cfg.RedirectURL[:i], true
}

// sameHost reports whether r came to the redirect URL's host.
func (c *Console) sameHost(r *http.Request) bool {
	origin, ok := c.redirectOrigin()
	if !ok {
		return true
	}
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return strings.EqualFold(host, r.Host)
}

// DemoPerson is a person of the demo's analysts file.
type DemoPerson struct {
	Name, OID, UPN string
	Actions        []string
	MayApprove     bool
}

// WriteDemoAnalysts writes an analysts file (mode 0600) for the demo and the
// tests: the local administrator (every action, may approve), the console
// key, and people signed in through the emulated tenant.
func WriteDemoAnalysts(path, adminPub, consolePub string, people []DemoPerson) error {
	var b strings.Builder
	fmt.Fprintf(&b, "version: %d\nanalysts:\n  - name: %s\n    public_key: %s\n    actions: [\"*\"]\n    may_approve: true\n", analyst.FileVersion, analyst.LocalAdminName, adminPub)
	fmt.Fprintf(&b, "consoles:\n  - name: %s\n    public_key: %s\n", analyst.LocalConsoleName, consolePub)
	b.WriteString("people:\n")
	for _, p := range people {
		acts := make([]string, len(p.Actions))
		for i, a := range p.Actions {
			acts[i] = fmt.Sprintf("%q", a)
		}
		fmt.Fprintf(&b, "  - name: %s  # %s\n    entra_object_id: %s\n    actions: [%s]\n    may_approve: %t\n", p.Name, p.UPN, p.OID, strings.Join(acts, ", "), p.MayApprove)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("console: analysts file: %w", err)
	}
	if _, err := analyst.LoadFile(path); err != nil {
		return err
	}
	return nil
}

// FreeLoopbackAddr returns a loopback address with a port free right now
// (for tests and the demo when 9464 is taken).
func FreeLoopbackAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// URL is where people open the console.
func (c *Console) URL() string {
	if o, ok := c.redirectOrigin(); ok {
		return o + "/"
	}
	return c.cfg.RedirectURL
}
