package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestKeysKeepTheirFormat: the key builders produce the keys the packages
// wrote before the builders had one home, so state stored by an earlier
// version (requests in flight, windows, checkpoints) is found after an upgrade.
func TestKeysKeepTheirFormat(t *testing.T) {
	start := time.Unix(1767225600, 0)
	cases := map[string]string{
		RequestStateKey("r.1"):                       "req.r_1",
		ExpiryKey("r1"):                              "expiry.r1",
		ApprovalKey("r-1"):                           "approval.r-1",
		LeaseKey(FeedLeaseName("contoso.com")):       "lease.feeds=2Econtoso=2Ecom",
		CheckpointKey("signins"):                     "feed.signins",
		CheckpointKey("coverage", "mgmt", "Audit.x"): "feed.coverage.mgmt.Audit_x",
		SubscriptionStartAfterKey("Audit.Exchange"):  "feed.management_activity.Audit_Exchange.start_after",
		FeedStatusKey("signins", ""):                 "feed.status.signins._",
		FeedStatusKey("mgmt", "Audit.General"):       "feed.status.mgmt.Audit=2EGeneral",
		ThresholdKey("password-spray", "00ff"):       "threshold.password-spray.00ff",
		SuppressionKey("alice@contoso.com"):          "suppress.alice=40contoso=2Ecom",
		PlaybookBlastKey("p1", start):                "blast.playbook.p1.1767225600",
		ActionBlastPlaybookKey("p.1", start):         "blast.actions.playbook.p_1.1767225600",
		ActionBlastActionKey("disable_user", start):  "blast.actions.action.disable_user.1767225600",
		ReplayKey("a."):                              "id.612e",
		ExpiryFilter():                               "expiry.>",
		ApprovalFilter():                             "approval.>",
		FeedStatusFilter():                           "feed.status.>",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
	if id := ExpiryKeyID(ExpiryKey("abc")); id != "abc" {
		t.Errorf("ExpiryKeyID = %q", id)
	}
	if id := ApprovalKeyID(ApprovalKey("abc")); id != "abc" {
		t.Errorf("ApprovalKeyID = %q", id)
	}
	if ExpiryKeyID("req.abc") != "" || ApprovalKeyID("expiry.abc") != "" {
		t.Error("a key of another prefix parsed")
	}
}

// TestKeysStayOneTokenPerPart: hostile names cannot reach into another
// part of the namespace (no '.', '*', '>' or space survives in a part).
func TestKeysStayOneTokenPerPart(t *testing.T) {
	for _, hostile := range []string{"a.b", "*", ">", "a b", "feeds.x.>", ""} {
		for _, k := range []string{LeaseKey(hostile), SuppressionKey(hostile), ThresholdKey(hostile, "h"), PlaybookBlastKey(hostile, time.Unix(0, 0))} {
			if strings.ContainsAny(k, "*> ") {
				t.Errorf("key %q from %q has a wildcard or space", k, hostile)
			}
		}
		if got := strings.Count(RequestStateKey(hostile), "."); got != 1 {
			t.Errorf("RequestStateKey(%q) has %d dots", hostile, got)
		}
	}
}

// TestDerivedIDsKeepTheirScheme: the ids are the ones the packages derived
// before they had one home (an id that changed would let a request in flight
// across an upgrade run twice).
func TestDerivedIDsKeepTheirScheme(t *testing.T) {
	old := func(s string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(s)).String() }
	cases := map[string]string{
		RecordID("r1", "final"):       old("responder/r1/final"),
		PlaybookRequestID("e1", "p1"): old("responder/event/e1/playbook/p1"),
		NextStepID("r1"):              old("responder/r1/next"),
		InverseRequestID("u1"):        old("responder/u1/inverse"),
		ExpiryRequestID("b1"):         old("responder/b1/expiry"),
		RejectedEventID(42):           old("responder/event-msg/42/rejected"),
		RejectedActionID(42):          old("responder/msg-42/rejected"),
		DerivedID("r1", "matched"):    old("responder/r1/matched"),
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("id %s, want %s", got, want)
		}
	}
}

func TestSubjectBuilders(t *testing.T) {
	cases := map[string]string{
		AuditSelect("t1", "", "disable_user"): "responder.t1.audit.*.disable_user",
		AuditSelect("", "failed", ""):         "responder.*.audit.failed.*",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
}
