package actions

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultProtectedRoles are protected when Protected.Roles is nil.
var defaultProtectedRoles = []string{"Global Administrator", "Privileged Role Administrator", "Privileged Authentication Administrator"}

// DefaultProtectedRoles returns the directory roles protected by default.
func DefaultProtectedRoles() []string { return append([]string(nil), defaultProtectedRoles...) }

// Protected lists identities that a playbook never acts on and an analyst acts on
// only with an explicit, audited override.
type Protected struct {
	// Users holds UPNs and object ids, compared case-insensitively.
	Users []string
	// Roles are directory role names (or role template ids) whose members are
	// protected (active, through role-assignable groups, or PIM-eligible),
	// looked up through a Directory. nil means DefaultProtectedRoles (Global
	// Administrator, Privileged Role Administrator, Privileged Authentication
	// Administrator); an empty non-nil slice protects no role.
	Roles []string
}

// RoleNames returns the configured roles, with the default for nil.
func (p Protected) RoleNames() []string {
	if p.Roles == nil {
		return DefaultProtectedRoles()
	}
	return p.Roles
}

// Identity is one protected directory object, with every name it goes by.
type Identity struct {
	ID  string `json:"id,omitempty"`
	UPN string `json:"upn,omitempty"`
	// Why it is protected: "listed" or "role <name>".
	Why string `json:"why,omitempty"`
}

// Decision is the outcome of a guard: Allow, or not with the reason.
type Decision struct {
	Allow    bool
	Override bool // allowed only because an analyst overrode a protection
	Reason   string
	// Approval, when set, says why an allowed request must wait for a human
	// decision first (a playbook isolating a server).
	Approval string
}

// Check is the protected-identity guard over the listed users only, a pure
// function of the request.
func (p Protected) Check(r *Request) Decision {
	ids := make([]Identity, 0, len(p.Users))
	for _, u := range p.Users {
		ids = append(ids, Identity{ID: u, Why: "listed"})
	}
	return CheckIdentities(r, ids)
}

// CheckIdentities is the protected-identity guard over resolved identities (the
// listed users and the members of the protected roles), a pure function.
func CheckIdentities(r *Request, ids []Identity) Decision {
	u := strings.TrimSpace(r.Target.User)
	if u == "" {
		return Decision{Allow: true}
	}
	for _, x := range ids {
		if !strings.EqualFold(strings.TrimSpace(x.ID), u) && !strings.EqualFold(strings.TrimSpace(x.UPN), u) {
			continue
		}
		why := ""
		if x.Why != "" && x.Why != "listed" {
			why = " (" + x.Why + ")"
		}
		switch {
		case r.RequestedBy.Kind == "analyst" && r.OverrideProtected:
			return Decision{Allow: true, Override: true, Reason: "target " + u + " is a protected identity" + why + "; analyst override by " + r.RequestedBy.Name}
		case r.RequestedBy.Kind == "analyst":
			return Decision{Reason: "target " + u + " is a protected identity" + why + " (an analyst may override explicitly)"}
		default:
			return Decision{Reason: "target " + u + " is a protected identity" + why + "; " + r.RequestedBy.Kind + " requests never act on it"}
		}
	}
	return Decision{Allow: true}
}

// IPPolicy bounds what block_ip may block.
type IPPolicy struct {
	// MinPrefixV4 and MinPrefixV6 are the broadest prefixes accepted (default
	// /16 and /48): a shorter prefix is refused.
	MinPrefixV4, MinPrefixV6 int
	// NeverBlock are ranges no block may overlap (RESPONDER_NEVER_BLOCK: the
	// company's own egress, partners), besides the tenant's trusted named
	// locations (TrustedRanges).
	NeverBlock []netip.Prefix
}

// TrustedRanges reads the ranges the tenant trusts (its trusted IP named
// locations), so that a block never locks the company out. graphexec
// implements it.
type TrustedRanges interface {
	TrustedRanges(ctx context.Context) ([]netip.Prefix, error)
}

// CheckNeverBlock refuses a prefix that overlaps a never-block range or a
// trusted one, a pure function.
func (p IPPolicy) CheckNeverBlock(pfx netip.Prefix, trusted []netip.Prefix) Decision {
	for _, n := range p.NeverBlock {
		if n.Overlaps(pfx) {
			return Decision{Reason: fmt.Sprintf("range %s overlaps %s on the never-block list", pfx, n)}
		}
	}
	for _, n := range trusted {
		if n.Overlaps(pfx) {
			return Decision{Reason: fmt.Sprintf("range %s overlaps %s, a trusted named location of the tenant", pfx, n)}
		}
	}
	return Decision{Allow: true}
}

var specialRanges = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001::/23", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// CheckIP is the block_ip guard, a pure function: the prefix must be no broader
// than the configured minimum and must not overlap private, loopback,
// link-local, multicast, shared (CGNAT) or otherwise reserved space. The
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32) are accepted: they never carry real traffic, and the sandbox
// tenant uses them as attacker addresses.
func (p IPPolicy) CheckIP(pfx netip.Prefix) Decision {
	v4, v6 := p.MinPrefixV4, p.MinPrefixV6
	if v4 <= 0 {
		v4 = 16
	}
	if v6 <= 0 {
		v6 = 48
	}
	min := v6
	if pfx.Addr().Is4() {
		min = v4
	}
	if pfx.Bits() < min {
		return Decision{Reason: fmt.Sprintf("range %s is broader than the minimum prefix /%d", pfx, min)}
	}
	for _, s := range specialRanges {
		if s.Overlaps(pfx) {
			return Decision{Reason: fmt.Sprintf("range %s overlaps private or reserved space %s", pfx, s)}
		}
	}
	return Decision{Allow: true}
}
