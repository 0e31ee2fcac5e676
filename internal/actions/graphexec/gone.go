package graphexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	abs "github.com/microsoft/kiota-abstractions-go"

	"github.com/responder-sec/responder/internal/actions"
)

// Identity Protection keeps risk detections and riskyUsers records of users
// who were deleted since, and the riskyUser's isDeleted ("Indicates whether
// the user is deleted", https://learn.microsoft.com/graph/api/resources/riskyuser)
// is computed offline and late, so it can still say false. An action on such a
// user meets Graph's 404 Request_ResourceNotFound on /users/{id}. userGone
// turns that 404 into one clear, permanent failure ("user … no longer exists
// (deleted …): nothing to do") instead of Graph's raw text; when the user is
// named by object id the directory's deleted items confirm it and give the
// date (https://learn.microsoft.com/graph/api/directory-deleteditems-get).
// Nothing is retried and nothing else is called.
func (e *Executor) userGone(ctx context.Context, c *calls, user string, err error) error {
	var ae *actions.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		return err
	}
	// Microsoft's own code stays in the text, for its support.
	graph := ""
	if ae.Code != "" {
		graph = " (Graph: HTTP 404 " + ae.Code + ")"
	}
	gone := &actions.Error{Class: actions.Permanent, Status: http.StatusNotFound, Code: "UserNotFound", RequestID: ae.RequestID,
		Message: fmt.Sprintf("user %s no longer exists (deleted, or never in this directory): nothing to do%s", user, graph)}
	if !isObjectID(user) {
		return gone
	}
	if err := e.budgets.Entra(ctx, 1, 0); err != nil {
		return gone
	}
	b, derr := e.raw(ctx, c, abs.GET, seg("directory", "deletedItems", user), query("$select", "id,deletedDateTime"), nil)
	if derr != nil {
		return gone
	}
	var d struct {
		DeletedDateTime string `json:"deletedDateTime"`
	}
	if json.Unmarshal(b, &d) != nil || d.DeletedDateTime == "" {
		return gone
	}
	gone.Code = "UserDeleted"
	gone.Message = fmt.Sprintf("user %s no longer exists (deleted %s; restorable from deleted items for 30 days): nothing to do%s", user, d.DeletedDateTime, graph)
	return gone
}

// isObjectID reports whether s has the shape of an Entra object id (a GUID).
func isObjectID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
				return false
			}
		}
	}
	return true
}
