package m365sim

import (
	"fmt"
	"net/http"
	"strings"
)

// Role-assignable groups, role assignments to them, and PIM-eligible role
// assignments: what a protected-role lookup must resolve besides the direct
// members of an activated directory role.
//
// Microsoft sources:
//   - unifiedRoleAssignment: "Supported principals are users, role-assignable
//     groups, and service principals"; GET /roleManagement/directory/roleAssignments
//     supports $filter on roleDefinitionId and $expand=principal
//     (https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments,
//     https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleassignment).
//     For built-in roles roleDefinitionId is the role template id.
//   - PIM eligibility: GET /roleManagement/directory/roleEligibilityScheduleInstances
//     with $filter and $expand=principal, permission RoleEligibilitySchedule.Read.Directory
//     or RoleManagement.Read.Directory
//     (https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleeligibilityscheduleinstances).
//   - role-assignable groups (isAssignableToRole, set at creation only) and
//     GET /groups/{id}/transitiveMembers, with the microsoft.graph.user cast,
//     flattening nested groups
//     (https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers,
//     https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-concept).

type groupRec struct {
	ID, DisplayName    string
	IsAssignableToRole bool
	Members            []string // user or group ids
}

// roleGrant is one role assignment (active) or eligibility (PIM) of a
// principal (user or group) to a role template.
type roleGrant struct {
	ID, TemplateID, PrincipalID string
	Eligible                    bool
}

var (
	permGroupMemberRead = anyOf("GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
	permEligibilityRead = anyOf("RoleEligibilitySchedule.Read.Directory", "RoleEligibilitySchedule.ReadWrite.Directory",
		"RoleManagement.Read.All", "RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory")
	permAssignmentRead = anyOf("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All",
		"RoleManagement.ReadWrite.Directory", "Directory.ReadWrite.All")
)

// roleAssignmentRoutes: matchRoute strips "microsoft.graph." from a segment,
// so the user cast of transitiveMembers is the pattern segment "user".
func roleAssignmentRoutes() []route {
	return []route{
		{http.MethodGet, "roleManagement/directory/roleAssignments", permAssignmentRead, thrEntra, (*Tenant).listRoleAssignments},
		{http.MethodGet, "roleManagement/directory/roleEligibilityScheduleInstances", permEligibilityRead, thrEntra, (*Tenant).listRoleEligibilities},
		{http.MethodGet, "groups/{}/transitiveMembers", permGroupMemberRead, thrEntra, (*Tenant).listTransitiveMembers},
		{http.MethodGet, "groups/{}/transitiveMembers/user", permGroupMemberRead, thrEntra, (*Tenant).listTransitiveUsers},
	}
}

// AddGroup creates a security group with the given members (user UPNs or
// ids, or group ids); roleAssignable sets isAssignableToRole. It returns the
// group's id.
func (t *Tenant) AddGroup(name string, roleAssignable bool, members ...string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := &groupRec{ID: newGUID(), DisplayName: name, IsAssignableToRole: roleAssignable}
	for _, m := range members {
		id, err := t.principalLocked(m)
		if err != nil {
			return "", err
		}
		g.Members = append(g.Members, id)
	}
	if t.st.groups == nil {
		t.st.groups = map[string]*groupRec{}
	}
	t.st.groups[g.ID] = g
	return g.ID, nil
}

// AssignRole gives a principal (user UPN or id, or the id of a role-assignable
// group) an active assignment of the role. A group that is not role-assignable
// is refused, as Entra ID refuses it.
func (t *Tenant) AssignRole(roleName, principal string) error {
	return t.grant(roleName, principal, false)
}

// AddEligibleRole makes a principal eligible (PIM) for the role: it holds no
// active assignment until it activates, so it is not a member of the
// directory role.
func (t *Tenant) AddEligibleRole(roleName, principal string) error {
	return t.grant(roleName, principal, true)
}

func (t *Tenant) grant(roleName, principal string, eligible bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, err := t.principalLocked(principal)
	if err != nil {
		return err
	}
	if g := t.st.groups[id]; g != nil && !g.IsAssignableToRole {
		return fmt.Errorf("m365sim: group %s is not role-assignable (isAssignableToRole is false)", g.DisplayName)
	}
	tid := roleTemplates[roleName]
	if tid == "" {
		tid = t.roleByNameLocked(roleName).TemplateID
	}
	t.st.grants = append(t.st.grants, &roleGrant{ID: newGUID(), TemplateID: tid, PrincipalID: id, Eligible: eligible})
	return nil
}

func (t *Tenant) principalLocked(key string) (string, error) {
	if u := t.st.userLocked(key); u != nil {
		return u.ID, nil
	}
	if g := t.st.groups[strings.ToLower(key)]; g != nil {
		return g.ID, nil
	}
	return "", fmt.Errorf("m365sim: no user or group %q", key)
}

func groupObj(g *groupRec) map[string]any {
	return map[string]any{"@odata.type": "#microsoft.graph.group", "id": g.ID, "displayName": g.DisplayName,
		"isAssignableToRole": g.IsAssignableToRole, "securityEnabled": true, "mailEnabled": false}
}

func (t *Tenant) principalObjLocked(id string) map[string]any {
	if u := t.st.users[id]; u != nil {
		o := userView(userObj(u), "")
		o["@odata.type"] = "#microsoft.graph.user"
		return o
	}
	if g := t.st.groups[id]; g != nil {
		return groupObj(g)
	}
	for _, a := range t.st.apps {
		if spID(a.ClientID) == id {
			return map[string]any{"@odata.type": "#microsoft.graph.servicePrincipal", "id": id, "appId": a.ClientID, "displayName": a.DisplayName}
		}
	}
	return nil
}

// grantsLocked lists the role assignments (eligible false) or eligibilities:
// the active ones include each direct member of an activated directory role.
func (t *Tenant) grantItemsLocked(r *req, eligible bool) []*item {
	expand := strings.Contains(strings.ToLower(r.q("$expand")), "principal")
	var items []*item
	add := func(id, tid, principal string) {
		o := map[string]any{"id": id, "roleDefinitionId": tid, "principalId": principal, "directoryScopeId": "/"}
		if eligible {
			o["memberType"], o["startDateTime"], o["endDateTime"] = "Direct", nil, nil
		}
		if expand {
			if p := t.principalObjLocked(principal); p != nil {
				o["principal"] = p
			}
		}
		items = append(items, &item{obj: o})
	}
	if !eligible {
		for _, d := range t.st.roles {
			for _, m := range d.Members {
				add(d.TemplateID+"_"+m, d.TemplateID, m)
			}
		}
	}
	for _, g := range t.st.grants {
		if g.Eligible == eligible {
			add(g.ID, g.TemplateID, g.PrincipalID)
		}
	}
	if !eligible {
		// Service principals hold directory roles too ("Supported principals
		// are users, role-assignable groups, and service principals",
		// unifiedRoleAssignment); an app's roles are listed with its
		// service principal's object id (the token's oid) as principalId.
		for _, key := range sortedKeys(t.st.apps) {
			a := t.st.apps[key]
			for _, name := range a.DirectoryRoles {
				tid := roleTemplates[name]
				if tid == "" {
					tid = exchangeRoleTemplates[name]
				}
				if tid == "" {
					continue
				}
				add(tid+"_"+spID(a.ClientID), tid, spID(a.ClientID))
			}
		}
	}
	return items
}

// exchangeRoleTemplates are the Exchange directory roles an app may hold
// (template ids from "Microsoft Entra built-in roles",
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/permissions-reference).
var exchangeRoleTemplates = map[string]string{
	"Exchange Recipient Administrator": "31392ffb-586c-42d1-9346-e59415a2cc4e",
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func (t *Tenant) listRoleAssignments(r *req, _ []string) *resp {
	t.mu.Lock()
	items := t.grantItemsLocked(r, false)
	t.mu.Unlock()
	return t.list(r, items, listing{context: "roleManagement/directory/roleAssignments", defTop: 100, maxTop: 999, schema: roleAssignmentSchema()})
}

func (t *Tenant) listRoleEligibilities(r *req, _ []string) *resp {
	t.mu.Lock()
	items := t.grantItemsLocked(r, true)
	t.mu.Unlock()
	return t.list(r, items, listing{context: "roleManagement/directory/roleEligibilityScheduleInstances", defTop: 100, maxTop: 999, schema: roleEligibilitySchema()})
}

// transitiveLocked flattens a group's membership (nested groups included,
// each listed once, cycles cut).
func (t *Tenant) transitiveLocked(g *groupRec) []map[string]any {
	seen := map[string]bool{g.ID: true}
	var out []map[string]any
	var walk func(*groupRec)
	walk = func(g *groupRec) {
		for _, m := range g.Members {
			if seen[m] {
				continue
			}
			seen[m] = true
			if p := t.principalObjLocked(m); p != nil {
				out = append(out, p)
			}
			if sub := t.st.groups[m]; sub != nil {
				walk(sub)
			}
		}
	}
	walk(g)
	return out
}

func (t *Tenant) listTransitive(r *req, p []string, usersOnly bool) *resp {
	t.mu.Lock()
	g := t.st.groups[strings.ToLower(p[0])]
	var items []*item
	if g != nil {
		for _, o := range t.transitiveLocked(g) {
			if usersOnly && o["@odata.type"] != "#microsoft.graph.user" {
				continue
			}
			if sel := r.q("$select"); sel != "" {
				typ := o["@odata.type"]
				o = selectProps(o, sel)
				o["@odata.type"] = typ
			}
			items = append(items, &item{obj: o})
		}
	}
	t.mu.Unlock()
	if g == nil {
		return t.notFoundEntra(r, p[0])
	}
	l := listing{context: "directoryObjects", defTop: 100, maxTop: 999}
	if usersOnly { // the microsoft.graph.user cast: the user's properties
		l.schema = userSchema()
	}
	return t.list(r, items, l)
}

func (t *Tenant) listTransitiveMembers(r *req, p []string) *resp {
	return t.listTransitive(r, p, false)
}
func (t *Tenant) listTransitiveUsers(r *req, p []string) *resp { return t.listTransitive(r, p, true) }
