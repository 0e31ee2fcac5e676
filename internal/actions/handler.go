package actions

import (
	"context"
	"time"
)

// Handler carries out one catalogue action. Execute is required; the others
// are optional abilities, declared here instead of discovered by type
// assertion.
type Handler struct {
	// Execute performs the validated, guarded request against Microsoft. It
	// returns a *Error for Microsoft failures.
	Execute func(ctx context.Context, req *Request, p Params) (Result, error)
	// Plan reports what Execute would do, reading only (dry run; nil: the
	// catalogue's description).
	Plan func(ctx context.Context, req *Request, p Params) (Result, error)
	// Probe tells whether the effect of an attempt interrupted after since is
	// already in place. Required for actions whose Spec is not RepeatSafe.
	Probe func(ctx context.Context, req *Request, p Params, since time.Time) (bool, error)
	// Warn is recorded when the request is accepted, before any call (for
	// example that a hard delete cannot be undone; "" for none).
	Warn func(req *Request, p Params) string
	// Guard is the action's own safety check, run in the worker's guard stage
	// after the catalogue's generic guards, reading only (the Defender
	// actions: protected devices, servers, verified domains, allowed
	// hashes). A Decision that does not Allow refuses the request; one with
	// Approval set holds it for a human decision; an error fails closed.
	Guard func(ctx context.Context, req *Request, p Params) (Decision, error)
}

// Handlers maps each action to its handler: an executor's explicit
// registration (graphexec.Executor.Handlers).
type Handlers map[Name]Handler

// Missing lists the catalogue actions with no usable handler: none at all, or
// no Probe for an action that is not RepeatSafe. Meta actions (undo) are the
// worker's own.
func (h Handlers) Missing() []Name {
	var out []Name
	for _, s := range Specs() {
		if s.Meta {
			continue
		}
		x, ok := h[s.Name]
		if !ok || x.Execute == nil || (!s.RepeatSafe && x.Probe == nil) {
			out = append(out, s.Name)
		}
	}
	return out
}

// Uniform registers f for every catalogue action (and a probe that never
// finds an effect in place): for benchmarks and tests of the worker.
func Uniform(f func(ctx context.Context, req *Request, p Params) (Result, error)) Handlers {
	h := Handlers{}
	for _, s := range Specs() {
		if s.Meta {
			continue
		}
		h[s.Name] = Handler{Execute: f, Probe: func(context.Context, *Request, Params, time.Time) (bool, error) { return false, nil }}
	}
	return h
}
