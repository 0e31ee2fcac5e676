package approval

import (
	"fmt"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

// Rules say which requests wait for approval, and for how many approvers.
// The zero value requires nothing.
type Rules struct {
	// Actions maps an action kind to the approvals it always needs (1 or 2).
	Actions map[string]int `yaml:"actions"`
	// Override is the approvals an analyst's override of a protected identity
	// needs (0 means 1: an override is never unapproved).
	Override int `yaml:"override"`
	// OverLimit is the approvals a request past a blast-radius limit needs
	// (0 means 1).
	OverLimit int `yaml:"over_limit"`
	// TTL is how long a request waits before it expires (default DefaultTTL).
	TTL time.Duration `yaml:"ttl"`
}

// DefaultTTL is how long a pending request waits by default.
const DefaultTTL = 24 * time.Hour

// Facts are what the worker knows about a request beyond the request itself.
type Facts struct {
	// StepApprovals is the approvals the playbook step asks for (0: none).
	StepApprovals int
	// OverLimit describes the blast-radius limit the request is past ("" when
	// within limits), e.g. "disable_user: 5 in the last hour (limit 5)".
	OverLimit string
	// Protected is set when the target is a protected identity (the request
	// then needs an override, and the override needs approval).
	Protected bool
	// Sensitive says why the action's own guard asks for a human decision
	// (a playbook isolating a server or domain controller); "" none.
	Sensitive string
}

// Requirement is the answer of Need: Required == 0 means run now.
type Requirement struct {
	Required int
	Why      []string
}

// Need decides whether req waits for approval and for how many approvers: the
// largest count any applicable rule asks for, capped at 2. Every reason is
// kept for the audit record.
func (r Rules) Need(req *actions.Request, f Facts) Requirement {
	var out Requirement
	add := func(n int, why string) {
		if n <= 0 {
			n = 1
		}
		if n > 2 {
			n = 2
		}
		out.Required = max(out.Required, n)
		out.Why = append(out.Why, why)
	}
	if n := r.Actions[string(req.Action)]; n > 0 {
		add(n, fmt.Sprintf("action %s requires %d approval(s)", req.Action, min(n, 2)))
	}
	if f.StepApprovals > 0 {
		add(f.StepApprovals, "the playbook step requires approval")
	}
	if f.OverLimit != "" {
		add(r.OverLimit, "past the blast-radius limit: "+f.OverLimit)
	}
	if f.Protected && req.OverrideProtected && req.RequestedBy.Kind == "analyst" {
		add(r.Override, "override of a protected identity")
	}
	if f.Sensitive != "" {
		add(1, f.Sensitive)
	}
	return out
}

// ttl returns the configured TTL or the default.
func (r Rules) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return DefaultTTL
}
