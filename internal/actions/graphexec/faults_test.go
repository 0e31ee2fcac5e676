package graphexec_test

import (
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

// Each fault class, on the batched Entra path (disable_user) and on a direct
// Outlook path (disable_forward_rules).
func TestFaultClasses(t *testing.T) {
	cases := []struct {
		name     string
		fault    m365sim.Fault
		outcome  audit.Outcome
		code     string
		detail   string
		attempts int // the final record's attempts (0: don't check)
	}{
		{"403 names the permission", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 403, Code: "Authorization_RequestDenied"},
			audit.Failed, "Authorization_RequestDenied", "needs User.EnableDisableAccount.All", 1},
		{"404 is permanent", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 404, Code: "Request_ResourceNotFound"},
			audit.Failed, "Request_ResourceNotFound", "permanent", 1},
		{"429 with Retry-After", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 429, RetryAfter: "0", Count: 2},
			audit.Succeeded, "", "account disabled", 1},
		{"429 without Retry-After", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 429, Count: 1},
			audit.Succeeded, "", "account disabled", 1},
		{"429 past the retries", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 429, RetryAfter: "0"},
			audit.Failed, "TooManyRequests", "throttled", 4},
		{"503 is retried", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 503, Count: 1},
			audit.Succeeded, "", "account disabled", 2},
		{"503 until the attempts run out", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 503},
			audit.Failed, "serviceNotAvailable", "transient", 4},
		{"connection reset is retried", m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Reset: true, Count: 1},
			audit.Succeeded, "", "account disabled", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, hopts{exec: func(c *graphexec.Config) { c.MaxItemWait = 20 * time.Millisecond }})
			h.sim.AddFault(c.fault)
			o, rec := h.do(request(actions.DisableUser, user("bob@contoso.com"), nil))
			want(t, o, c.outcome, c.detail)
			if o.ErrorCode != c.code {
				t.Errorf("error code %q, want %q", o.ErrorCode, c.code)
			}
			if c.attempts > 0 && rec.Attempts != c.attempts {
				t.Errorf("attempts %d, want %d", rec.Attempts, c.attempts)
			}
			if c.outcome == audit.Failed && len(rec.GraphRequestIDs) == 0 {
				t.Errorf("failed record carries no Graph request ids")
			}
			u, _ := h.sim.User("bob@contoso.com")
			if u.AccountEnabled != (c.outcome == audit.Failed) {
				t.Errorf("bob enabled=%t after %s", u.AccountEnabled, c.outcome)
			}
		})
	}
}

func TestOutlookForbiddenNamesThePermission(t *testing.T) {
	h := newHarness(t, hopts{})
	h.sim.AddFault(m365sim.Fault{Method: "GET", PathPrefix: "/v1.0/users/bob", Status: 403})
	o, _ := h.do(request(actions.DisableForwardRules, user("bob@contoso.com"), nil))
	want(t, o, audit.Failed, "needs MailboxSettings.Read")
	if o.ErrorCode != "ErrorAccessDenied" {
		t.Errorf("code %q", o.ErrorCode)
	}
}

func TestEngineWideDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, hopts{worker: func(c *actions.WorkerConfig) { c.DryRun = true }})
	for _, r := range []*actions.Request{
		request(actions.DisableUser, user("alice@contoso.com"), nil),
		request(actions.ResetPassword, user("alice@contoso.com"), nil),
		request(actions.BlockIP, actions.Target{IP: "203.0.113.0/24"}, nil),
		request(actions.PurgeMail, actions.Target{MessageID: "<x@evil.example>"}, map[string]any{"all_mailboxes": true, "hard": true}),
	} {
		o, rec := h.do(r)
		want(t, o, audit.DryRun, "dry run (engine)")
		if !rec.DryRun || o.Sealed != nil {
			t.Errorf("%s: record dry_run=%t sealed=%d bytes", r.Action, rec.DryRun, len(o.Sealed))
		}
	}
	for _, w := range h.sim.WireLog() {
		if w.Method != "GET" && !strings.HasSuffix(w.Path, "/token") && !strings.HasSuffix(w.Path, "$batch") {
			t.Errorf("dry run sent %s %s", w.Method, w.Path)
		}
	}
	if u, _ := h.sim.User("alice@contoso.com"); !u.AccountEnabled || u.PasswordChanges != 0 {
		t.Error("dry run changed alice")
	}
	if len(h.sim.NamedLocations()) != 0 {
		t.Error("dry run created a named location")
	}
}
