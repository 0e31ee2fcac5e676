package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

const playbooks = "../../playbooks"

// outcomes returns, per action, the outcomes recorded for target user in order.
func outcomes(recs []audit.Record, user string) map[string][]audit.Outcome {
	out := map[string][]audit.Outcome{}
	for _, r := range recs {
		if r.Outcome == audit.Matched || !strings.EqualFold(r.Target["user"], user) {
			continue
		}
		out[r.Action] = append(out[r.Action], r.Outcome)
	}
	return out
}

func TestDemoContainsRiskyUser(t *testing.T) {
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: playbooks, Timeout: 60 * time.Second})
	t.Log("\n" + buf.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if res.User.AccountEnabled {
		t.Error("alice is still enabled in the tenant")
	}
	if res.User.RevokeCount != 1 {
		t.Errorf("alice's sessions revoked %d times, want exactly 1", res.User.RevokeCount)
	}
	got := outcomes(res.Records, "alice@contoso.com")
	for _, a := range []string{"disable_user", "revoke_sessions"} {
		o := got[a]
		if len(o) != 2 || o[0] != audit.Accepted || o[1] != audit.Succeeded {
			t.Errorf("%s audit outcomes = %v, want [accepted succeeded]", a, o)
		}
	}
	if !res.Verify.OK || res.Verify.Records < 5 {
		t.Errorf("audit verify = %+v, want OK over at least 5 records", res.Verify)
	}
	for _, r := range res.Records {
		if r.Action == "disable_user" && r.Outcome == audit.Succeeded {
			if len(r.GraphRequestIDs) == 0 {
				t.Error("succeeded disable_user carries no Graph request id")
			}
			if !strings.Contains(string(r.Before), `"accountEnabled":true`) || !strings.Contains(string(r.After), `"accountEnabled":false`) {
				t.Errorf("disable_user before/after = %s / %s", r.Before, r.After)
			}
			if r.Playbook != "high-risk-user" || r.Actor.Kind != "playbook" {
				t.Errorf("disable_user actor = %+v playbook %q", r.Actor, r.Playbook)
			}
		}
	}
	for _, want := range []string{"detected", "matched", "succeeded", "Audit chain:", "Contained alice@contoso.com"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
}

func TestDemoDisableForbiddenIsAuditedAndEngineGoesOn(t *testing.T) {
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{
		Out: &buf, DataDir: t.TempDir(), PlaybookDir: playbooks, Timeout: 60 * time.Second,
		Prepare: func(s *m365sim.Tenant) {
			s.AddFault(m365sim.Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 403,
				Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."})
		},
	})
	t.Log("\n" + buf.String())
	if err == nil || !strings.Contains(err.Error(), "disable_user ended failed") {
		t.Fatalf("demo error = %v, want a failed disable_user", err)
	}
	if !res.User.AccountEnabled {
		t.Error("the account was disabled although Graph refused")
	}
	var failed *audit.Record
	for i, r := range res.Records {
		if r.Action == "disable_user" && r.Outcome == audit.Failed {
			failed = &res.Records[i]
		}
	}
	if failed == nil {
		t.Fatal("no failed disable_user record")
	}
	if failed.ErrorCode != "Authorization_RequestDenied" {
		t.Errorf("error code = %q", failed.ErrorCode)
	}
	if failed.Attempts != 1 {
		t.Errorf("a permanent 403 was attempted %d times, want 1", failed.Attempts)
	}
	if !strings.Contains(failed.Detail, "User.EnableDisableAccount.All") {
		t.Errorf("detail %q does not name the missing permission", failed.Detail)
	}
	if len(failed.GraphRequestIDs) == 0 {
		t.Error("failed record has no Graph request id")
	}
	// The engine kept going: the next step still ran.
	if o := outcomes(res.Records, "alice@contoso.com")["revoke_sessions"]; len(o) == 0 || o[len(o)-1] != audit.Succeeded {
		t.Errorf("revoke_sessions outcomes = %v, want it to succeed after the failed disable", o)
	}
	if res.User.RevokeCount != 1 {
		t.Errorf("revoke count = %d", res.User.RevokeCount)
	}
	if !res.Verify.OK {
		t.Errorf("audit chain: %+v", res.Verify)
	}
}
