package defenderexec

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/clock"
)

// ProtectedTag is the machine tag that protects a device from playbooks.
const ProtectedTag = "responder-protected"

// DefaultServerTags mark a device as a server or domain controller besides its
// osPlatform (Windows Server*): Linux and macOS servers cannot be told apart
// otherwise.
var defaultServerTags = []string{"server", "domain-controller", "dc"}

// Config wires an Executor. Zero values take the defaults.
type Config struct {
	// HTTP adds a token for the Defender API audience to every request
	// (m365.BearerClient(creds, cred, m365.DefenderScope)). Required.
	HTTP *http.Client
	// Settings are the actions' own settings (Spec.Settings), read with
	// Settings.Of(action).
	Settings actions.Settings
	// BaseURL is the API origin (default m365.DefaultDefenderURL; regional
	// hosts and the emulator's origin work alike). Paths /api/… are appended.
	BaseURL string
	// Budgets paces the calls per API (nil: this executor's own, Microsoft's
	// limits).
	Budgets *Budgets
	// Clock drives polling, coalescing and indicator expiry (nil: real).
	Clock  clock.Clock
	Logger *slog.Logger

	// ProtectedDevices are machine ids, Entra device ids or computer DNS
	// names (case-insensitive; a DNS name also matches its first label) that
	// playbooks never isolate; ProtectedTags are machine tags that do the same
	// (default responder-protected).
	ProtectedDevices []string
	ProtectedTags    []string
	// ServerTags mark servers and domain controllers besides osPlatform
	// (default server, domain-controller, dc); a playbook's isolation of
	// one waits for approval.
	ServerTags []string
	// AllowedHashes are file hashes (SHA-256 or SHA-1) never blocked.
	AllowedHashes []string
	// ClientID is Responder's application (client) id: the createdBy of the
	// indicators it creates, which it may update; any other is left alone.
	ClientID string
	// Domains reads the tenant's verified domains for the indicator guard (nil:
	// every URL and domain block fails closed).
	Domains actions.VerifiedDomainSource

	// PollInitial is the wait before the first read of a machine action
	// (default 2s); each further wait doubles up to PollMax (default 30s);
	// PollTimeout bounds the whole wait of one attempt (default 90s, under
	// the worker's handle timeout): past it the attempt fails as transient
	// and the retry follows the same action.
	PollInitial, PollMax, PollTimeout time.Duration
	// CoalesceWindow is how long an indicator round waits for more requests
	// after the last arrival (default 200ms: a block waits that long at
	// most, and a burst arriving from a loaded worker stays in one import).
	CoalesceWindow time.Duration
	// MaxRetryAfter caps an in-place wait for a 429's Retry-After (default
	// 30s); Resends bounds them (default 3).
	MaxRetryAfter time.Duration
	Resends       int
	// DeviceCacheTTL is how long a resolved device is reused between the
	// guard and the action (default 1m).
	DeviceCacheTTL time.Duration
}

// Executor carries out the Defender actions. Build one per process.
type Executor struct {
	cfg   Config
	log   *slog.Logger
	c     *client
	clock clock.Clock
	inds  *coalescer

	mu      sync.Mutex
	devices map[string]cachedDevice
}

type cachedDevice struct {
	m  Machine
	at time.Time
}

// New returns an executor.
func New(cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Budgets == nil {
		cfg.Budgets = NewBudgets(Limits{}, cfg.Clock)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.securitycenter.microsoft.com"
	}
	if cfg.ProtectedTags == nil {
		cfg.ProtectedTags = []string{ProtectedTag}
	}
	if cfg.ServerTags == nil {
		cfg.ServerTags = append([]string(nil), defaultServerTags...)
	}
	if cfg.PollInitial <= 0 {
		cfg.PollInitial = 2 * time.Second
	}
	if cfg.PollMax <= 0 {
		cfg.PollMax = 30 * time.Second
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 90 * time.Second
	}
	if cfg.CoalesceWindow <= 0 {
		cfg.CoalesceWindow = 200 * time.Millisecond
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.Resends <= 0 {
		cfg.Resends = 3
	}
	if cfg.DeviceCacheTTL <= 0 {
		cfg.DeviceCacheTTL = time.Minute
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	e := &Executor{cfg: cfg, log: cfg.Logger.With("part", "defender"), clock: cfg.Clock, devices: map[string]cachedDevice{}}
	e.c = &client{hc: hc, base: strings.TrimRight(cfg.BaseURL, "/"), budgets: cfg.Budgets, clock: cfg.Clock, maxWait: cfg.MaxRetryAfter, resends: cfg.Resends}
	e.inds = &coalescer{}
	return e
}

// Handlers is the executor's explicit registration of the Defender actions.
func (e *Executor) Handlers() actions.Handlers {
	device := func(isolate bool) actions.Handler {
		h := actions.Handler{
			Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.setIsolation(ctx, req, p, isolate, false)
			},
			Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.setIsolation(ctx, req, p, isolate, true)
			},
		}
		if isolate {
			h.Guard = e.deviceGuard
		}
		return h
	}
	block := actions.Handler{
		Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.block(ctx, req, p, false)
		},
		Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.block(ctx, req, p, true)
		},
		Guard: e.indicatorGuard,
	}
	return actions.Handlers{
		actions.IsolateDevice: device(true),
		actions.ReleaseDevice: device(false),
		actions.BlockFile:     block,
		actions.BlockURL:      block,
		actions.BlockDomain:   block,
		actions.BlockDeviceIP: block,
		actions.RemoveIndicator: {
			Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.remove(ctx, req, p, false)
			},
			Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
				return e.remove(ctx, req, p, true)
			},
		},
	}
}

// Merge returns the union of handler sets (the Graph executor's and this
// one's); a later set wins for an action both name.
func Merge(sets ...actions.Handlers) actions.Handlers {
	out := actions.Handlers{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

// permission is what a 403 names as missing.
func permission(n actions.Name) string {
	s, _ := actions.Lookup(n)
	return strings.Join(s.Least(), " + ")
}
