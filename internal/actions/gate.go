package actions

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Gate authenticates requests and holds those that need a human decision. It is
// declared here and implemented by the engine over the analyst and approval
// packages (which import this one). A nil Gate admits every well-formed request
// and holds none: only for tests and trusted single-user set-ups.
type Gate interface {
	// Admit checks who sent req. released reports that msg is an approved request
	// re-published by the approval service (checked against its store): it skips
	// the approval and blast-radius stages. A non-empty reject refuses the request
	// with that reason; an error is an infrastructure failure (retry).
	Admit(ctx context.Context, req *Request, msg jetstream.Msg) (released bool, reject string, err error)
	// Hold decides whether req waits for approval and, if so, stores it as
	// pending. why says for what, for the audit record.
	Hold(ctx context.Context, req *Request, msg jetstream.Msg, f HoldFacts) (held bool, why string, err error)
}

// HoldFacts are what the worker knows beyond the request.
type HoldFacts struct {
	// OverLimit describes the blast-radius limit the request is past ("" within).
	OverLimit string
	// Protected: the target is a protected identity and an analyst overrode it.
	Protected bool
}

// PublishFunc sends a request to the ACTIONS stream (signing it, in the engine).
type PublishFunc func(ctx context.Context, r *Request) error
