package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
	"github.com/responder-sec/responder/internal/ops"
)

type serveCmd struct {
	tenantFlags
	busFlags
	consoleFlags
	notifyFlags
	Listen           string        `help:"Embedded NATS listen address (loopback unless told otherwise; anything else needs --nats-listen-tls-cert)." default:"127.0.0.1:4222" env:"RESPONDER_NATS_LISTEN"`
	ListenTLSCert    string        `name:"nats-listen-tls-cert" help:"Embedded NATS server certificate (PEM)." env:"RESPONDER_NATS_LISTEN_TLS_CERT" type:"path"`
	ListenTLSKey     string        `name:"nats-listen-tls-key" help:"Private key of --nats-listen-tls-cert (mode 0600)." env:"RESPONDER_NATS_LISTEN_TLS_KEY" type:"path"`
	ListenTLSCA      string        `name:"nats-listen-tls-ca" help:"CA that signs client certificates: clients then need one (mutual TLS) besides their key." env:"RESPONDER_NATS_LISTEN_TLS_CA" type:"path"`
	Sandbox          bool          `help:"Run against the built-in emulated tenant instead of Microsoft." env:"RESPONDER_SANDBOX"`
	Playbooks        string        `help:"Playbook directory." default:"playbooks" env:"RESPONDER_PLAYBOOKS"`
	PlaybookWatch    time.Duration `help:"How often to look for changed playbook files and reload them (0: only on SIGHUP)." default:"2s" env:"RESPONDER_PLAYBOOK_WATCH"`
	Protected        string        `help:"Protected identities (UPNs or object ids, comma-separated): never actioned by a playbook." env:"RESPONDER_PROTECTED"`
	ProtectedRoles   string        `help:"Directory roles (names or template ids, comma-separated) whose members, through role-assignable groups and PIM eligibility too, are protected; 'none' protects no role. Default: Global Administrator, Privileged Role Administrator, Privileged Authentication Administrator." env:"RESPONDER_PROTECTED_ROLES"`
	NeverBlock       string        `help:"Ranges block_ip never blocks (CIDR or address, comma-separated: the company's egress, partners), besides the tenant's trusted named locations." env:"RESPONDER_NEVER_BLOCK"`
	ProtectedDevices string        `help:"Devices playbooks never isolate (Defender machine ids, Entra device ids or computer names, comma-separated), besides those tagged responder-protected." env:"RESPONDER_PROTECTED_DEVICES"`
	ServerTags       string        `help:"Defender machine tags that mark servers and domain controllers besides osPlatform (comma-separated; default server,domain-controller,dc): a playbook's isolation of one waits for approval." env:"RESPONDER_DEFENDER_SERVER_TAGS"`
	AllowedHashes    string        `help:"File hashes block-file never blocks (SHA-256 or SHA-1, comma-separated)." env:"RESPONDER_DEFENDER_ALLOWED_HASHES"`
	DryRun           bool          `help:"Record what would be done and change nothing." env:"RESPONDER_DRY_RUN"`
	Replicas         int           `help:"Stream and bucket replicas (3 in a three-server cluster; 0 keeps what existing streams have, 1 for new ones)." default:"0" env:"RESPONDER_REPLICAS"`
	Analysts         string        `help:"Analysts file (YAML: names, public keys, rights); default: only the local administrator key." env:"RESPONDER_ANALYSTS" type:"path"`
	OpsAddr          string        `help:"Operations HTTP address (/healthz, /readyz, /metrics, /api/audit); empty disables." default:"127.0.0.1:9464" env:"RESPONDER_OPS_ADDR"`
	OpsToken         string        `help:"Bearer token /api/audit requires (at least 24 characters; default: generated into --data-dir/ops-token, mode 0600)." env:"RESPONDER_OPS_TOKEN"`
	OpsHosts         []string      `help:"Host names /api/audit answers to besides IP addresses and localhost (DNS-rebinding check)." env:"RESPONDER_OPS_HOSTS"`
	VerifiedDomains  []string      `help:"The tenant's verified domains (default: read from Graph)." env:"RESPONDER_VERIFIED_DOMAINS"`
	CAPolicyState    string        `help:"State of the Conditional Access block policy Responder creates." enum:"enabled,enabledForReportingButNotEnforced" default:"enabled" env:"RESPONDER_CA_POLICY_STATE"`
	ApprovalTTL      time.Duration `help:"How long a request waits for approval before it expires." default:"24h" env:"RESPONDER_APPROVAL_TTL"`
	RequireApproval  []string      `help:"Action kinds that always need approval, as NAME or NAME=2 for two approvers." env:"RESPONDER_REQUIRE_APPROVAL"`
	BlastLimit       []string      `help:"Most requests of an action per window, as NAME=N (0 = unlimited); past it requests wait for approval. Defaults: ${blast_defaults}." env:"RESPONDER_BLAST_LIMIT"`
	BlastPerPlaybook int           `help:"Most requests of one playbook per window (0 keeps the default 100)." env:"RESPONDER_BLAST_PER_PLAYBOOK"`
	BlastWindow      time.Duration `help:"Blast-radius counting window." default:"1h" env:"RESPONDER_BLAST_WINDOW"`
	ActionSetting    []string      `help:"An action's own setting, as ACTION.NAME=VALUE (a list value is comma-separated); repeat for several, or separate with ';' in the variable. Declared: ${action_settings}." sep:";" env:"RESPONDER_ACTION_SETTING"`
}

func (c *serveCmd) Run(e *env) error {
	var creds m365.Credentials
	protected := splitList(c.Protected)
	if c.Sandbox {
		if c.TenantID != "" || c.ClientID != "" || c.ClientSecret != "" || c.ClientCert != "" {
			return errors.New("contradictory settings: --sandbox uses the built-in tenant; unset the tenant credentials (RESPONDER_TENANT_ID, RESPONDER_CLIENT_ID, RESPONDER_CLIENT_SECRET, RESPONDER_CLIENT_CERT)")
		}
		sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedOrg, Logger: e.log.With("part", "m365sim")})
		if err != nil {
			return fmt.Errorf("sandbox tenant: %w", err)
		}
		defer sim.Close()
		info := sim.Info()
		creds = m365.Credentials{
			TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL,
			HTTPClient: sim.HTTPClient(),
		}
		if len(protected) == 0 {
			protected = []string{"breakglass@contoso.com"}
		}
		shown := info
		shown.ClientSecret = "[redacted]"
		b, _ := json.Marshal(shown)
		e.log.Info("sandbox tenant running", "tenant", string(b))
	} else {
		// The PEM holds the application's private key: refused when others
		// may read it, as key files are.
		if c.ClientCert != "" {
			if err := m365.CheckPrivateFile(c.ClientCert); err != nil {
				return fmt.Errorf("client certificate (--client-cert, RESPONDER_CLIENT_CERT): %w", err)
			}
		}
		var err error
		if creds, err = c.credentials(); err != nil {
			return err
		}
	}
	neverBlock, err := parseRanges(c.NeverBlock)
	if err != nil {
		return fmt.Errorf("--never-block (RESPONDER_NEVER_BLOCK): %w", err)
	}
	var roles []string // nil: the default protected roles
	switch r := strings.TrimSpace(c.ProtectedRoles); {
	case strings.EqualFold(r, "none"):
		roles = []string{}
	case r != "":
		roles = splitList(r)
	}
	if c.OpsToken != "" {
		if err := ops.CheckToken(c.OpsToken); err != nil {
			return fmt.Errorf("--ops-token (RESPONDER_OPS_TOKEN): %w", err)
		}
	}
	if err := checkListen("--ops-addr (RESPONDER_OPS_ADDR)", c.OpsAddr, false); err != nil {
		return err
	}
	bc := bus.Config{URL: c.NatsURL, StoreDir: c.DataDir, Replicas: c.Replicas, Auth: c.clientAuth(nil)}
	if c.NatsURL == "" {
		if c.NatsNkey != "" || c.NatsCreds != "" {
			return errors.New("contradictory settings: --nats-nkey and --nats-creds (RESPONDER_NATS_NKEY, RESPONDER_NATS_CREDS) are for an external cluster (--nats-url); the embedded server trusts the engine key of --data-dir")
		}
		if (c.ListenTLSCert == "") != (c.ListenTLSKey == "") {
			return errors.New("--nats-listen-tls-cert and --nats-listen-tls-key (RESPONDER_NATS_LISTEN_TLS_CERT, RESPONDER_NATS_LISTEN_TLS_KEY) go together")
		}
		if err := checkListen("--listen (RESPONDER_NATS_LISTEN)", c.Listen, c.ListenTLSCert != ""); err != nil {
			return fmt.Errorf("%w (--nats-listen-tls-cert, RESPONDER_NATS_LISTEN_TLS_CERT)", err)
		}
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		bc.Host, bc.Port = host, port
		bc.TLS = bus.ServerTLS{CertFile: c.ListenTLSCert, KeyFile: c.ListenTLSKey, CAFile: c.ListenTLSCA}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	rules := approval.Rules{TTL: c.ApprovalTTL, Actions: map[string]int{}}
	for _, a := range c.RequireApproval {
		name, n := a, 1
		if i := strings.IndexByte(a, '='); i > 0 {
			name = a[:i]
			if v, err := strconv.Atoi(a[i+1:]); err == nil && v > 0 {
				n = v
			}
		}
		if _, ok := actions.Lookup(actions.FromCLIName(name)); !ok {
			return fmt.Errorf("--require-approval: unknown action %q", name)
		}
		rules.Actions[string(actions.FromCLIName(name))] = n
	}
	blast := actions.DefaultBlastLimits()
	blast.Window = c.BlastWindow
	if c.BlastPerPlaybook > 0 {
		blast.PerPlaybook = c.BlastPerPlaybook
	}
	for _, l := range c.BlastLimit {
		i := strings.IndexByte(l, '=')
		if i <= 0 {
			return fmt.Errorf("--blast-limit %q: want NAME=N", l)
		}
		n, err := strconv.Atoi(l[i+1:])
		name := actions.FromCLIName(l[:i])
		if _, ok := actions.Lookup(name); !ok || err != nil || n < 0 {
			return fmt.Errorf("--blast-limit %q: want a catalogue action and a count", l)
		}
		blast.PerAction[name] = n
	}
	settings, err := actions.ParseSettings(c.ActionSetting)
	if err != nil {
		return fmt.Errorf("--action-setting: %w", err)
	}
	consoleKP, consolePub, err := c.consoleKey(c.DataDir, c.OpsAddr, e.log)
	if err != nil {
		return err
	}
	notifications, err := c.notifySettings(c.ConsoleRedirectURL, c.OpsAddr)
	if err != nil {
		return err
	}
	eng, err := engine.New(e.ctx, engine.Config{
		ConsoleKey: consolePub, Notify: notifications,
		Blast: blast,
		Bus:   bc, Credentials: creds, PlaybookDir: c.Playbooks, PlaybookWatch: watchEvery(c.PlaybookWatch), DataDir: c.DataDir,
		Protected: actions.Protected{Users: protected, Roles: roles}, DryRun: c.DryRun, Logger: e.log,
		IP:           actions.IPPolicy{NeverBlock: neverBlock},
		AnalystsFile: c.Analysts, OpsAddr: c.OpsAddr, OpsToken: c.OpsToken, OpsHosts: c.OpsHosts, Approvals: rules,
		VerifiedDomains: c.VerifiedDomains, CAPolicyState: c.CAPolicyState, ActionSettings: settings,
		Defender: engine.DefenderSettings{ProtectedDevices: splitList(c.ProtectedDevices), ServerTags: nilIfEmpty(splitList(c.ServerTags)), AllowedHashes: splitList(c.AllowedHashes)},
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	closeConsole, err := c.attach(eng, consoleKP, creds, c.OpsAddr, c.OpsHosts, c.natsAuthFlags, e.log)
	if err != nil {
		return err
	}
	defer closeConsole()
	if err := writeContext(c.DataDir, localContext{NatsURL: eng.Bus().ClientURL(), TenantID: creds.TenantID, Started: time.Now().UTC()}); err != nil {
		e.log.Warn("could not write the local context", "err", err)
	}
	e.log.Info("responder serving", "tenant", creds.TenantID, "nats", eng.Bus().ClientURL(), "dry_run", c.DryRun)
	// SIGHUP reloads the playbooks and the analysts file (as changed files
	// do, see --playbook-watch); an invalid set or file is refused and the
	// last good one stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupDone := make(chan struct{})
	defer func() { <-hupDone }()
	// The reloader stops when serving stops, also when Run fails by itself.
	hupCtx, hupCancel := context.WithCancel(e.ctx)
	defer hupCancel()
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				if err := eng.ReloadPlaybooks(); err != nil {
					e.log.Error("playbook reload refused", "err", err)
				} else {
					e.log.Info("playbooks reloaded", "count", len(eng.Playbooks().Playbooks()))
				}
				if err := eng.ReloadAnalysts(); err != nil {
					e.log.Error("analysts reload refused", "err", err)
				} else if c.Analysts != "" {
					e.log.Info("analysts reloaded", "keys", len(eng.Directory().All()))
				}
			}
		}
	}()
	err = eng.Run(e.ctx)
	e.log.Info("responder stopped")
	return err
}

// parseRanges reads a comma-separated list of CIDR ranges or addresses.
func parseRanges(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, r := range splitList(s) {
		if p, err := netip.ParsePrefix(r); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(r)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR range nor an address", r)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// watchEvery maps --playbook-watch to engine.Config.PlaybookWatch: 0 there
// means the default, here it means off.
func watchEvery(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
