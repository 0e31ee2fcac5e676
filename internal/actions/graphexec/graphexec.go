package graphexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/responder-sec/responder/internal/actions"
)

// Config tunes an Executor. Zero values take the defaults.
type Config struct {
	Logger *slog.Logger
	// Budgets is the per-process throttling budget shared by every executor
	// of the process (nil: a budget of this executor's own with Microsoft's
	// published limits).
	Budgets *Budgets
	// Protected is the same protection the worker enforces: its members are
	// excluded from Responder's Conditional Access policy.
	Protected actions.Protected
	// VerifiedDomains overrides the tenant's verified domains (nil: read from
	// Graph, cached for CacheTTL).
	VerifiedDomains []string
	// CAPolicyState is the state of the blocking policy when Responder creates
	// it: "enabled" (default) or "enabledForReportingButNotEnforced".
	CAPolicyState string
	// LocationName prefixes the IP named locations Responder owns (default
	// "Responder blocked IPs"); PolicyName names its policy (default
	// "Responder: block sign-ins from blocked IPs").
	LocationName, PolicyName string
	// MaxRangesPerLocation is Microsoft's limit of IP ranges per named
	// location (default 2000); past it a new location is used.
	MaxRangesPerLocation int
	// BatchLinger is how long a $batch waits for company (default 5ms;
	// negative: no batching).
	BatchLinger time.Duration
	// BatchSize caps a $batch (default and at most 20).
	BatchSize int
	// ItemRetries bounds the one-by-one retries of a throttled batch item
	// (default 3); MaxItemWait caps one wait (default 30s).
	ItemRetries int
	MaxItemWait time.Duration
	// CoalesceWindow is how long a block_ip / unblock_ip round waits for more
	// requests before reading the named locations (default 50ms).
	CoalesceWindow time.Duration
	// CacheTTL bounds how long protected identities, role ids and domains
	// are cached (default 10m).
	CacheTTL time.Duration
	// PurgeMailboxes is how many mailboxes purge_mail searches at once
	// (default 8); each mailbox is further held to its Outlook concurrency.
	PurgeMailboxes int
	// NewPassword generates reset_password's password (default: 20 random
	// characters of four classes from crypto/rand).
	NewPassword func() (string, error)
	// Exchange reaches the Exchange Online admin API for what Graph does not
	// expose (remove_mailbox_forwarding, restore_mailbox_forwarding): an HTTP
	// client that adds a token for the outlook.office365.com audience, such as
	// m365.BearerClient(creds, cred, creds.ExchangeScope()). nil: those actions
	// fail with ExchangeNotConfigured.
	Exchange *http.Client
	// ExchangeURL is the admin API base, ending in /adminapi/beta (default
	// DefaultExchangeURL; override for sovereign clouds and the emulator).
	ExchangeURL string
	// TenantID is the tenant the admin API paths name (required with Exchange).
	TenantID string
	// Settings are the actions' own settings (Spec.Settings), read with
	// Settings.Of(action).
	Settings actions.Settings
}

// Executor carries out the catalogue's actions with Graph (and the Exchange
// admin API): Handlers registers them; it also implements actions.Directory.
type Executor struct {
	client  *msgraphsdk.GraphServiceClient
	adapter abs.RequestAdapter
	cfg     Config
	log     *slog.Logger
	budgets *Budgets
	batch   *batcher
	ips     *coalescer
	dir     directoryCache
	exo     *exchange // nil when not configured
}

// New returns an executor over client with the default configuration.
func New(client *msgraphsdk.GraphServiceClient, log *slog.Logger) *Executor {
	return NewWithConfig(client, Config{Logger: log})
}

// NewWithConfig returns an executor over client.
func NewWithConfig(client *msgraphsdk.GraphServiceClient, cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Budgets == nil {
		cfg.Budgets = NewBudgets(BudgetConfig{})
	}
	if cfg.CAPolicyState == "" {
		cfg.CAPolicyState = "enabled"
	}
	if cfg.LocationName == "" {
		cfg.LocationName = "Responder blocked IPs"
	}
	if cfg.PolicyName == "" {
		cfg.PolicyName = "Responder: block sign-ins from blocked IPs"
	}
	if cfg.MaxRangesPerLocation <= 0 {
		cfg.MaxRangesPerLocation = 2000
	}
	if cfg.BatchLinger == 0 {
		cfg.BatchLinger = 5 * time.Millisecond
	}
	if cfg.ItemRetries <= 0 {
		cfg.ItemRetries = 3
	}
	if cfg.MaxItemWait <= 0 {
		cfg.MaxItemWait = 30 * time.Second
	}
	if cfg.CoalesceWindow <= 0 {
		cfg.CoalesceWindow = 50 * time.Millisecond
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 10 * time.Minute
	}
	if cfg.PurgeMailboxes <= 0 {
		cfg.PurgeMailboxes = 8
	}
	if cfg.NewPassword == nil {
		cfg.NewPassword = generatePassword
	}
	e := &Executor{client: client, adapter: client.GetAdapter(), cfg: cfg, log: cfg.Logger.With("part", "graph"), budgets: cfg.Budgets}
	e.batch = newBatcher(e, cfg.BatchLinger, cfg.BatchSize, cfg.ItemRetries)
	e.ips = &coalescer{}
	e.exo = newExchange(cfg)
	return e
}

// Handlers is the executor's explicit registration: one handler per
// catalogue action it carries out (the worker's completeness check and the
// catalogue test fail when one is missing). Each family of actions registers
// its own in the file that carries them out, so that an action added to a
// family touches that file only; a new family adds its line here.
func (e *Executor) Handlers() actions.Handlers {
	h := actions.Handlers{}
	e.addUsers(h)             // users.go
	e.addRules(h)             // rules.go
	e.addMailboxForwarding(h) // exchange.go
	e.addPurge(h)             // mail.go
	e.addIPBlocks(h)          // ca.go
	e.addTABL(h)              // tabl.go
	return h
}

// userAction is the handler of an action on target.user: f carries it out,
// or with plan reports what it would do.
func userAction(n actions.Name, f func(ctx context.Context, user string, p actions.Params, perm string, plan bool) (actions.Result, error)) actions.Handler {
	perm := permission(n)
	return actions.Handler{
		Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return f(ctx, req.Target.User, p, perm, false)
		},
		Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return f(ctx, req.Target.User, p, perm, true)
		},
	}
}

// permission is what a 403 names as missing: the least-privileged write
// permission, and the role the service principal needs where there is one.
func permission(n actions.Name) string {
	s, _ := actions.Lookup(n)
	p := s.Permission()
	if s.API == actions.APIExchange && s.Role != "" {
		p += " (Office 365 Exchange Online) + the " + s.Role + " role"
	}
	return p
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// Classify turns an SDK or transport error into an *actions.Error. It never calls
// the SDK error's Error method (which dereferences a message Microsoft may omit).
func Classify(err error, permission string) *actions.Error {
	if err == nil {
		return nil
	}
	var already *actions.Error
	if errors.As(err, &already) {
		if already.Permission == "" && already.Status == http.StatusForbidden && already.Class == actions.Permanent {
			already.Permission = permission
		}
		return already
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &actions.Error{Class: actions.Transient, Code: "timeout", Message: "the call did not complete in time", Err: err}
	}
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		e := &actions.Error{Status: oe.ResponseStatusCode}
		if me := oe.GetErrorEscaped(); me != nil {
			e.Code = deref(me.GetCode())
			e.Message = deref(me.GetMessage())
			if ie := me.GetInnerError(); ie != nil {
				e.RequestID = deref(ie.GetRequestId())
				e.ClientRequestID = deref(ie.GetClientRequestId())
			}
		}
		fromHeaders(e, oe.ResponseHeaders)
		classifyStatus(e, permission)
		return e
	}
	var ae *abs.ApiError
	if errors.As(err, &ae) {
		e := &actions.Error{Status: ae.ResponseStatusCode, Message: ae.Message}
		fromHeaders(e, ae.ResponseHeaders)
		classifyStatus(e, permission)
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF") {
		return &actions.Error{Class: actions.Transient, Message: "network failure", Err: err}
	}
	// Token acquisition failures (azidentity) are not retryable by waiting.
	if strings.Contains(err.Error(), "AADSTS") || strings.Contains(err.Error(), "authentication failed") {
		return &actions.Error{Class: actions.Permanent, Code: "authentication_failed", Message: firstLine(err.Error())}
	}
	return &actions.Error{Class: actions.Transient, Message: "unexpected failure", Err: err}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func fromHeaders(e *actions.Error, h *abs.ResponseHeaders) {
	if h == nil {
		return
	}
	get := func(k string) string {
		for _, kk := range []string{k, strings.ToLower(k), http.CanonicalHeaderKey(k)} {
			if v := h.Get(kk); len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	if e.RequestID == "" {
		e.RequestID = get("request-id")
	}
	if e.ClientRequestID == "" {
		e.ClientRequestID = get("client-request-id")
	}
	if ra := get("Retry-After"); ra != "" {
		if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
}

func classifyStatus(e *actions.Error, permission string) {
	switch {
	case e.Status == http.StatusTooManyRequests || e.Code == "AF429" || e.Code == "ApplicationThrottled" || e.Code == "TooManyRequests":
		e.Class = actions.Throttled
	case e.Status >= 500 || e.Status == http.StatusRequestTimeout:
		e.Class = actions.Transient
	default:
		e.Class = actions.Permanent
	}
	if e.Status == http.StatusForbidden && e.Class == actions.Permanent && permission != "" {
		e.Permission = permission
	}
	if e.Code == "" {
		e.Code = fmt.Sprintf("HTTP%d", e.Status)
	}
}

// Execute carries out one request directly through its handler (tools,
// benchmarks and tests; the worker calls the handlers itself).
func (e *Executor) Execute(ctx context.Context, req *actions.Request) (actions.Result, error) {
	return e.call(ctx, req, false)
}

// Plan reports what Execute would do, reading only.
func (e *Executor) Plan(ctx context.Context, req *actions.Request) (actions.Result, error) {
	return e.call(ctx, req, true)
}

func (e *Executor) call(ctx context.Context, req *actions.Request, plan bool) (actions.Result, error) {
	p, err := actions.ParseParams(req.Action, req.Target, req.Params)
	if err != nil {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: err.Error()}
	}
	h, ok := e.Handlers()[req.Action]
	if !ok {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "NotImplemented", Message: "no Graph implementation for " + string(req.Action)}
	}
	if plan {
		if h.Plan == nil {
			return actions.Result{}, nil
		}
		return h.Plan(ctx, req, p)
	}
	return h.Execute(ctx, req, p)
}
