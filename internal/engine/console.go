package engine

import (
	"context"
	"net/http"
	"time"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/feeds"
)

// SetConsole sets the handler served at / on the operations address (the
// web console, built after New because it connects to this engine's bus with
// its own key). Call it before Run; it replaces Config.Console.
func (e *Engine) SetConsole(h http.Handler) { e.cfg.Console = h }

// console is the handler Run mounts at / on the operations address.
func (e *Engine) console() http.Handler { return e.cfg.Console }

// Recorder appends to the audit trail (the console records the refusals it
// decides itself: a POST without its CSRF token, a sign-in by someone the
// analysts file does not list).
func (e *Engine) Recorder() interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
} {
	return e.recorder
}

// FeedStatus is every feed's status as its poller last wrote it.
func (e *Engine) FeedStatus(ctx context.Context) ([]feeds.StatusLine, error) {
	raw, err := e.bus.State(ctx)
	if err != nil {
		return nil, err
	}
	return feeds.Status(ctx, bus.TenantState(raw, e.Tenant()), nil)
}

// reloadState is the last playbook reload.
type reloadState struct {
	at      time.Time
	lastErr string
	refused int
}

func (r *reloadState) note(at time.Time, err error) {
	r.at = at
	if err != nil {
		r.lastErr = err.Error()
		r.refused++
		return
	}
	r.lastErr = ""
}

// PlaybookReload reports the loaded playbooks' names, the last reload's
// time, the last refusal ("" when the last reload loaded) and how many
// reloads were refused since start.
func (e *Engine) PlaybookReload() (names []string, at time.Time, lastErr string, refused int) {
	for _, p := range e.Playbooks().Playbooks() {
		names = append(names, p.Name)
	}
	e.pbMu.Lock()
	defer e.pbMu.Unlock()
	return names, e.pbReload.at, e.pbReload.lastErr, e.pbReload.refused
}

// VerifyChain verifies the audit stream strictly: every record signed by an
// engine key of the analysts directory, linked, the kept head present.
func (e *Engine) VerifyChain(ctx context.Context) (audit.VerifyResult, error) {
	var keys []string
	for _, a := range e.Directory().All() {
		if a.Role == analyst.RoleEngine {
			keys = append(keys, a.PublicKey)
		}
	}
	tr, err := audit.NewTrusted(keys...)
	if err != nil {
		return audit.VerifyResult{}, err
	}
	opts := audit.VerifyOptions{Trusted: tr}
	if h, err := e.auditHead.Load(ctx); err == nil && h.Seq > 0 {
		opts.Anchors = append(opts.Anchors, audit.AnchorFromHead(h, "the kept head"))
	}
	return audit.VerifyStream(ctx, e.bus.JS, opts)
}
