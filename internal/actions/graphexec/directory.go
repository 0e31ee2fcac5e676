package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
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
		roles, err := e.list(ctx, c, "directoryRoles", "", "RoleManagement.Read.Directory", e.entraRead(1))
		if err != nil {
			return nil, nil, err
		}
		for _, raw := range roles {
			var r struct {
				ID             string `json:"id"`
				DisplayName    string `json:"displayName"`
				RoleTemplateID string `json:"roleTemplateId"`
			}
			if json.Unmarshal(raw, &r) != nil {
				continue
			}
			if !slices.ContainsFunc(names, func(n string) bool {
				return strings.EqualFold(n, r.DisplayName) || strings.EqualFold(n, r.RoleTemplateID)
			}) {
				continue
			}
			roleIDs = append(roleIDs, r.RoleTemplateID)
			members, err := e.list(ctx, c, seg("directoryRoles", r.ID, "members"), query("$select", "id,userPrincipalName"), "RoleManagement.Read.Directory", e.entraRead(1))
			if err != nil {
				return nil, nil, err
			}
			for _, m := range members {
				var x struct {
					ID  string `json:"id"`
					UPN string `json:"userPrincipalName"`
				}
				if json.Unmarshal(m, &x) == nil && x.ID != "" {
					ids = append(ids, actions.Identity{ID: x.ID, UPN: x.UPN, Why: "role " + r.DisplayName})
				}
			}
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
