package graphexec_test

import (
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
)

// A user deleted since the record that named them: by object id the deleted
// items confirm it (with the date), by UPN the failure still says the user no
// longer exists; never Graph's raw 404, never retried, nothing changed.
func TestActionOnADeletedUserIsAClearFailure(t *testing.T) {
	h := newHarness(t, hopts{})
	u, _ := h.sim.User("bob@contoso.com")
	if err := h.sim.DeleteUser(u.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		action actions.Name
		target string
		want   string
	}{
		{actions.DisableUser, u.ID, "user " + u.ID + " no longer exists (deleted 20"},
		{actions.RevokeSessions, u.ID, "user " + u.ID + " no longer exists (deleted 20"},
		{actions.DisableUser, u.UserPrincipalName, "user " + u.UserPrincipalName + " no longer exists (deleted, or never in this directory)"},
		{actions.ResetPassword, u.ID, "user " + u.ID + " no longer exists (deleted 20"},
	} {
		o, rec := h.do(request(tc.action, user(tc.target), nil))
		if o.Outcome != audit.Failed || !strings.Contains(rec.Detail, tc.want) || !strings.Contains(rec.Detail, "nothing to do") || rec.Attempts > 1 {
			t.Errorf("%s %s: %s %q (%d attempts)", tc.action, tc.target, o.Outcome, rec.Detail, rec.Attempts)
		}
	}
	d, _ := h.sim.DeletedUser(u.ID)
	if !d.AccountEnabled || d.RevokeCount != 0 {
		t.Fatalf("the deleted user was changed: %+v", d)
	}
}
