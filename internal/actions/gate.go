package actions

import (
	"context"

	"github.com/responder-sec/responder/internal/audit"
)

// Gate authenticates requests and holds those that need a human decision. It is
// declared here and implemented by the engine over the analyst and approval
// packages (which import this one). A nil Gate admits every well-formed request
// and holds none: only for tests and trusted single-user set-ups.
type Gate interface {
	// Admit checks who sent req. released reports that d is an approved request
	// re-published by the approval service, re-verified against the analysts
	// directory: it skips the approval and blast-radius stages. A non-empty
	// reject refuses the request with that reason; an error is an
	// infrastructure failure (retry).
	Admit(ctx context.Context, req *Request, d Delivery) (released bool, reject string, err error)
	// Hold decides whether req waits for approval and, if so, stores it as
	// pending. why says for what, for the audit record.
	Hold(ctx context.Context, req *Request, d Delivery, f HoldFacts) (held bool, why string, err error)
	// Authorize says whether who may request action now (the analysts
	// directory as it stands): "" when allowed, else the reason. undo uses it
	// for the inverse it would issue on who's behalf.
	Authorize(ctx context.Context, who audit.Actor, action Name) (reason string, err error)
}

// HoldFacts are what the worker knows beyond the request.
type HoldFacts struct {
	// OverLimit describes the blast-radius limit the request is past ("" within).
	OverLimit string
	// Protected: the target is a protected identity and an analyst overrode it.
	Protected bool
	// Approval says why the handler's guard asks for a human decision ("" none).
	Approval string
}
