package graphexec_test

import (
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestMissingDirectoryRoleNamed: the app holds every permission but not the
// User Administrator directory role, so Microsoft refuses an app-only password
// reset with a bare 403; the failure and its audit record name the role, not
// a permission, and the password is unchanged. A disable of a Security
// Administrator without Privileged Authentication Administrator likewise
// names that role and leaves the account enabled.
func TestMissingDirectoryRoleNamed(t *testing.T) {
	h := newHarness(t, hopts{})
	info := h.sim.Info()
	h.sim.AddApp(m365sim.App{ClientID: info.ClientID, ClientSecret: info.ClientSecret, Roles: m365sim.ResponderRoles(),
		DisplayName: "Responder", DirectoryRoles: []string{"Exchange Recipient Administrator"}})
	h.sim.AddUser(m365sim.User{UserPrincipalName: "secadmin@contoso.com"})
	if err := h.sim.AddRoleMember("Security Administrator", "secadmin@contoso.com"); err != nil {
		t.Fatal(err)
	}

	before, _ := h.sim.User(m365sim.BobID)
	o, rec := h.do(request(actions.ResetPassword, user(m365sim.BobID), nil))
	want(t, o, audit.Failed, graphexec.RoleUserAdministrator)
	if !strings.Contains(rec.Detail, "directory role "+graphexec.RoleUserAdministrator) {
		t.Fatalf("audit detail %q does not name the role", rec.Detail)
	}
	if after, _ := h.sim.User(m365sim.BobID); after.PasswordChanges != before.PasswordChanges {
		t.Fatal("the password changed")
	}

	o, rec = h.do(request(actions.DisableUser, user("secadmin@contoso.com"), nil))
	want(t, o, audit.Failed, graphexec.RolePrivilegedAuthAdministrator)
	if !strings.Contains(rec.Detail, graphexec.RolePrivilegedAuthAdministrator) || !strings.Contains(rec.Detail, "Security Administrator") {
		t.Fatalf("audit detail %q does not name the role", rec.Detail)
	}
	if u, _ := h.sim.User("secadmin@contoso.com"); !u.AccountEnabled {
		t.Fatal("the administrator was disabled")
	}
}
