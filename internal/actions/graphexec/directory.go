package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

// directoryCache holds what the executor looks up rarely: protected identities,
// the protected roles' template ids and the verified domains.
type directoryCache struct {
	mu        sync.Mutex
	key       string
	ids       []actions.Identity
	roleIDs   []string // role template ids of the protected roles
	idsAt     time.Time
	domains   []string
	domainsAt time.Time
	trusted   []netip.Prefix // ranges of the trusted IP named locations
	trustedAt time.Time
}

// ProtectedIdentities resolves the listed users (UPN and object id) and the
// members of the protected roles, cached for CacheTTL. It implements
// actions.Directory.
func (e *Executor) ProtectedIdentities(ctx context.Context, p actions.Protected) ([]actions.Identity, error) {
	ids, _, err := e.protected(ctx, p)
	return ids, err
}

func (e *Executor) protected(ctx context.Context, p actions.Protected) ([]actions.Identity, []string, error) {
	key := fmt.Sprintf("%q|%q", p.Users, p.RoleNames())
	e.dir.mu.Lock()
	if e.dir.key == key && time.Since(e.dir.idsAt) < e.cfg.CacheTTL {
		ids, roles := e.dir.ids, e.dir.roleIDs
		e.dir.mu.Unlock()
		return ids, roles, nil
	}
	e.dir.mu.Unlock()

	c := newCalls()
	var ids []actions.Identity
	for _, u := range p.Users {
		st, err := e.getUser(ctx, c, u)
		if err != nil {
			if ae := actions.AsError(err); ae.Status == http.StatusNotFound {
				ids = append(ids, actions.Identity{ID: u, Why: "listed"}) // protect the name anyway
				continue
			}
			return nil, nil, err
		}
		ids = append(ids, actions.Identity{ID: st.ID, UPN: st.UserPrincipalName, Why: "listed"})
	}
	var roleIDs []string
	if names := p.RoleNames(); len(names) > 0 {
		roles, err := e.protectedRoles(ctx, c, names)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range roles {
			roleIDs = append(roleIDs, r.templateID)
			more, err := e.roleHolders(ctx, c, r)
			if err != nil {
				return nil, nil, err
			}
			ids = append(ids, more...)
		}
	}
	e.dir.mu.Lock()
	e.dir.key, e.dir.ids, e.dir.roleIDs, e.dir.idsAt = key, ids, roleIDs, time.Now()
	e.dir.mu.Unlock()
	return ids, roleIDs, nil
}

func (e *Executor) entraRead(units float64) func(context.Context) (func(), error) {
	return func(ctx context.Context) (func(), error) {
		return func() {}, e.budgets.Entra(ctx, units, 0)
	}
}

// verifiedDomains is the configured list, or the tenant's verified domains
// read from Graph and cached.
func (e *Executor) verifiedDomains(ctx context.Context, c *calls) ([]string, error) {
	if e.cfg.VerifiedDomains != nil {
		return e.cfg.VerifiedDomains, nil
	}
	e.dir.mu.Lock()
	if e.dir.domains != nil && time.Since(e.dir.domainsAt) < e.cfg.CacheTTL {
		d := e.dir.domains
		e.dir.mu.Unlock()
		return d, nil
	}
	e.dir.mu.Unlock()
	raws, err := e.list(ctx, c, "domains", "", "Domain.Read.All", e.entraRead(1))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range raws {
		var d struct {
			ID         string `json:"id"`
			IsVerified bool   `json:"isVerified"`
		}
		if json.Unmarshal(r, &d) == nil && d.IsVerified {
			out = append(out, strings.ToLower(d.ID))
		}
	}
	if len(out) == 0 {
		return nil, &actions.Error{Class: actions.Permanent, Code: "NoVerifiedDomains", Message: "the tenant reports no verified domain; refusing to judge recipients external"}
	}
	e.dir.mu.Lock()
	e.dir.domains, e.dir.domainsAt = out, time.Now()
	e.dir.mu.Unlock()
	return out, nil
}

// wellKnownRoles are the template ids of built-in roles, identical in every
// tenant, for a protected role that no one holds actively (then it is not an
// activated directoryRole, yet may have eligible members).
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/permissions-reference
var wellKnownRoles = map[string]string{
	"global administrator":                    "62e90394-69f5-4237-9190-012177145e10",
	"privileged role administrator":           "e8611ab8-c189-46e8-94e1-60213ab1f814",
	"privileged authentication administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
	"security administrator":                  "194ae4cb-b126-40b2-bd5b-6091b380977d",
	"conditional access administrator":        "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
	"user administrator":                      "fe930be7-5e62-47db-91af-98c3a49a38b1",
	"exchange administrator":                  "29232cdf-9323-42fd-ade2-1d097af3e4de",
	"authentication administrator":            "c4e39bd9-1100-46d3-8c65-fb160da0071f",
	"helpdesk administrator":                  "729827e3-9c14-49f7-bb1b-9608f156bbb8",
}

type protectedRole struct{ name, templateID string }

// protectedRoles maps the configured names (display names or template ids)
// to template ids: the tenant's activated directory roles, then the
// well-known built-in ids. A name neither knows fails the lookup (closed):
// a typo must not leave a role unprotected silently.
func (e *Executor) protectedRoles(ctx context.Context, c *calls, names []string) ([]protectedRole, error) {
	raws, err := e.list(ctx, c, "directoryRoles", "", "RoleManagement.Read.Directory", e.entraRead(1))
	if err != nil {
		return nil, err
	}
	var out []protectedRole
	for _, n := range names {
		found := false
		for _, raw := range raws {
			var r struct {
				DisplayName    string `json:"displayName"`
				RoleTemplateID string `json:"roleTemplateId"`
			}
			if json.Unmarshal(raw, &r) == nil && (strings.EqualFold(n, r.DisplayName) || strings.EqualFold(n, r.RoleTemplateID)) {
				out, found = append(out, protectedRole{r.DisplayName, r.RoleTemplateID}), true
				break
			}
		}
		if found {
			continue
		}
		if tid, ok := wellKnownRoles[strings.ToLower(strings.TrimSpace(n))]; ok {
			out = append(out, protectedRole{n, tid})
			continue
		}
		if isGUID(n) {
			out = append(out, protectedRole{n, strings.ToLower(n)})
			continue
		}
		return nil, &actions.Error{Class: actions.Permanent, Code: "UnknownProtectedRole",
			Message: fmt.Sprintf("protected role %q is neither an activated directory role of the tenant nor a known built-in role; give its template id", n)}
	}
	return out, nil
}

// roleHolders resolves everyone who holds the role or may take it: active
// assignments (users, and role-assignable groups resolved transitively) and
// PIM-eligible ones (an eligible member activates the role at will, so a
// playbook must not act on them either).
//
// Microsoft: GET /roleManagement/directory/roleAssignments?$filter=roleDefinitionId eq '{id}'&$expand=principal
// (https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments: principals are
// users, role-assignable groups and service principals; for built-in roles
// roleDefinitionId is the template id), GET /roleManagement/directory/roleEligibilityScheduleInstances
// (https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleeligibilityscheduleinstances,
// RoleManagement.Read.Directory), and GET /groups/{id}/transitiveMembers/microsoft.graph.user
// (https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers, nested groups flattened).
func (e *Executor) roleHolders(ctx context.Context, c *calls, r protectedRole) ([]actions.Identity, error) {
	var out []actions.Identity
	for _, src := range []struct{ path, why string }{
		{"roleManagement/directory/roleAssignments", "role " + r.name},
		{"roleManagement/directory/roleEligibilityScheduleInstances", "eligible for role " + r.name},
	} {
		grants, err := e.list(ctx, c, src.path, query("$filter", "roleDefinitionId eq '"+r.templateID+"'", "$expand", "principal"),
			"RoleManagement.Read.Directory", e.entraRead(1))
		if err != nil {
			return nil, err
		}
		for _, raw := range grants {
			var g struct {
				PrincipalID string `json:"principalId"`
				Principal   struct {
					Type string `json:"@odata.type"`
					ID   string `json:"id"`
					UPN  string `json:"userPrincipalName"`
				} `json:"principal"`
			}
			if json.Unmarshal(raw, &g) != nil || g.PrincipalID == "" {
				continue
			}
			switch g.Principal.Type {
			case "#microsoft.graph.group":
				members, err := e.list(ctx, c, seg("groups", g.PrincipalID, "transitiveMembers", "microsoft.graph.user"),
					query("$select", "id,userPrincipalName"), "GroupMember.Read.All", e.entraRead(1))
				if err != nil {
					return nil, err
				}
				for _, m := range members {
					var x struct {
						ID  string `json:"id"`
						UPN string `json:"userPrincipalName"`
					}
					if json.Unmarshal(m, &x) == nil && x.ID != "" {
						out = append(out, actions.Identity{ID: x.ID, UPN: x.UPN, Why: src.why + " through group " + g.PrincipalID})
					}
				}
			default:
				// A user (or a service principal, which no user action
				// targets): protect the id, and the UPN when known.
				out = append(out, actions.Identity{ID: g.PrincipalID, UPN: g.Principal.UPN, Why: src.why})
			}
		}
	}
	return out, nil
}
