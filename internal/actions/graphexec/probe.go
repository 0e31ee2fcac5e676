package graphexec

import (
	"context"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/responder-sec/responder/internal/actions"
)

// probeSkew tolerates clock differences between this host and Microsoft.
const probeSkew = 5 * time.Second

// revokeApplied is revoke_sessions' probe: after a crash between Microsoft's
// answer and its record, a redelivered revoke_sessions first reads the user's
// signInSessionsValidFrom; if sessions were already invalidated since the
// interrupted attempt, the revoke is not sent again.
func (e *Executor) revokeApplied(ctx context.Context, req *actions.Request, _ actions.Params, since time.Time) (bool, error) {
	switch req.Action {
	case actions.RevokeSessions:
		u, err := e.client.Users().ByUserId(req.Target.User).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", "signInSessionsValidFrom"}},
		})
		if err != nil {
			return false, Classify(err, "User.Read.All")
		}
		// The v1.0 SDK model has no typed accessor for this property.
		var raw string
		switch v := u.GetAdditionalData()["signInSessionsValidFrom"].(type) {
		case *string:
			if v != nil {
				raw = *v
			}
		case string:
			raw = v
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return false, nil // unknown: not proven applied, so the call is made
		}
		return !t.Before(since.Add(-probeSkew)), nil
	}
	return false, nil
}
