package actions

import "strings"

// Protected lists identities that a playbook never acts on and an analyst acts on
// only with an explicit, audited override.
type Protected struct {
	// Users holds UPNs and object ids, compared case-insensitively.
	Users []string
}

// Decision is the outcome of a guard: Allow, or not with the reason.
type Decision struct {
	Allow    bool
	Override bool // allowed only because an analyst overrode a protection
	Reason   string
}

// Check is the protected-identity guard, a pure function of the request.
func (p Protected) Check(r *Request) Decision {
	u := strings.TrimSpace(r.Target.User)
	if u == "" {
		return Decision{Allow: true}
	}
	for _, x := range p.Users {
		if strings.EqualFold(strings.TrimSpace(x), u) {
			switch {
			case r.RequestedBy.Kind == "analyst" && r.OverrideProtected:
				return Decision{Allow: true, Override: true, Reason: "target " + u + " is a protected identity; analyst override by " + r.RequestedBy.Name}
			case r.RequestedBy.Kind == "analyst":
				return Decision{Reason: "target " + u + " is a protected identity (an analyst may override explicitly)"}
			default:
				return Decision{Reason: "target " + u + " is a protected identity; " + r.RequestedBy.Kind + " requests never act on it"}
			}
		}
	}
	return Decision{Allow: true}
}
