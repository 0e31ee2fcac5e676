package graphexec

import (
	"context"
	"encoding/json"
	"net/http"
)

// Graph answers a sensitive user update the app is not entitled to with 403
// Authorization_RequestDenied "Insufficient privileges to complete the
// operation." whether a permission or a directory role is missing, and never
// names the role. Microsoft's rules
// (https://learn.microsoft.com/en-us/graph/api/user-update#permissions, the
// passwordProfile property; "Who can reset passwords" and "Who can perform
// sensitive actions" in
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/privileged-roles-permissions):
//   - app-only, a password reset needs User-PasswordProfile.ReadWrite.All and
//     at least the User Administrator directory role on the app;
//   - disabling or resetting an administrator needs Privileged
//     Authentication Administrator (or Global Administrator).
//
// roleDenied turns such a 403 into an error naming the role: it reads the
// target's directory roles (memberOf, with the User.Read.All the action
// already holds) to tell an administrator from an ordinary user.

// limitedAdminRoles are the roles a User Administrator (and a Helpdesk
// Administrator) may still reset ("Who can reset passwords"); any other
// directory role makes the target a privileged administrator.
var limitedAdminRoles = map[string]bool{
	"Directory Readers": true, "Guest Inviter": true, "Helpdesk Administrator": true, "Message Center Reader": true,
	"Password Administrator": true, "Reports Reader": true, "Usage Summary Reports Reader": true,
}

// RoleUserAdministrator and RolePrivilegedAuthAdministrator are the directory
// roles a 403 on a user write names.
const (
	RoleUserAdministrator           = "User Administrator"
	RolePrivilegedAuthAdministrator = "Privileged Authentication Administrator"
)

// roleDenied rewrites err when it is Graph's 403 Authorization_RequestDenied
// for a user write: Permission then names the directory role the app's
// service principal lacks. password is true for a password reset.
func (e *Executor) roleDenied(ctx context.Context, c *calls, user string, err error, perm string, password bool) error {
	ae := Classify(err, perm)
	if ae == nil || ae.Status != http.StatusForbidden || ae.Code != "Authorization_RequestDenied" {
		return ae
	}
	admin, role := e.adminRole(ctx, c, user)
	switch {
	case admin:
		ae.Permission = "the directory role " + RolePrivilegedAuthAdministrator + " on the app's service principal: " +
			user + " holds the administrator role " + role + " (Microsoft's rule for sensitive actions on administrators)"
	case password:
		ae.Permission = "the directory role " + RoleUserAdministrator + " on the app's service principal (Microsoft's rule for app-only password resets), with " + perm
	default:
		return ae
	}
	return ae
}

// adminRole reports whether the user holds a directory role that only a
// Privileged Authentication Administrator may act on, and its name. A read
// failure is reported as not an administrator (the role then named is the
// one every reset needs).
func (e *Executor) adminRole(ctx context.Context, c *calls, user string) (bool, string) {
	items, err := e.list(ctx, c, seg("users", user, "memberOf"), query("$select", "displayName"), permUserRead, e.entraRead(1))
	if err != nil {
		return false, ""
	}
	for _, raw := range items {
		var o struct {
			Type        string `json:"@odata.type"`
			DisplayName string `json:"displayName"`
		}
		if json.Unmarshal(raw, &o) != nil || o.Type != "#microsoft.graph.directoryRole" {
			continue
		}
		if !limitedAdminRoles[o.DisplayName] {
			return true, o.DisplayName
		}
	}
	return false, ""
}
