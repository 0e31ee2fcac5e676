package graphexec_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
)

func TestPurgeMailAcrossMailboxesWithinConcurrency(t *testing.T) {
	h := newHarness(t, hopts{})
	h.sim.SetThrottling(true)
	h.sim.AddFault(m365sim.Fault{PathPrefix: "/v1.0/users/", Latency: 15 * time.Millisecond})
	const phish = "<campaign-42@evil.example>"
	boxes := []string{"alice@contoso.com", "bob@contoso.com", "carol@contoso.com"}
	ids := map[string][]string{}
	for _, b := range boxes {
		for i := 0; i < 12; i++ {
			id, err := h.sim.AddMessage(b, m365sim.Message{InternetMessageID: phish, Subject: "Invoice", FromAddress: "billing@evil.example"})
			if err != nil {
				t.Fatal(err)
			}
			ids[b] = append(ids[b], id)
		}
		if _, err := h.sim.AddMessage(b, m365sim.Message{Subject: "Invoice", FromAddress: "billing@evil.example"}); err != nil {
			t.Fatal(err)
		}
	}
	req := request(actions.PurgeMail, actions.Target{MessageID: phish}, map[string]any{"all_mailboxes": true, "hard": true})
	o, rec := h.do(req)
	want(t, o, audit.Succeeded, "deleted 36 of 36")
	if !strings.Contains(o.Detail, "cannot be undone") {
		t.Errorf("hard purge detail lacks the warning: %q", o.Detail)
	}
	for _, b := range boxes {
		for _, id := range ids[b] {
			if st, _ := h.sim.MessageState(b, id); st != "purged" {
				t.Errorf("%s %s: %s", b, id, st)
			}
		}
		if n := h.sim.MaxInFlight(b); n > 4 {
			t.Errorf("%s had %d requests in flight, limit 4", b, n)
		}
		if !strings.Contains(string(rec.After), fmt.Sprintf(`"mailbox":%q`, b)) {
			t.Errorf("per-mailbox report lacks %s: %s", b, rec.After)
		}
	}
	for _, w := range h.sim.WireLog() {
		if w.Status == 429 {
			t.Errorf("throttled: %s %s", w.Method, w.Path)
		}
	}
	// The accepted record warned before the hard delete.
	for _, r := range h.records() {
		if r.RequestID == req.ID && r.Outcome == audit.Accepted && !strings.Contains(r.Detail, "cannot be recovered") {
			t.Errorf("accepted record does not warn: %q", r.Detail)
		}
	}
	// Re-run: nothing left.
	o, _ = h.do(request(actions.PurgeMail, actions.Target{MessageID: phish}, map[string]any{"all_mailboxes": true, "hard": true}))
	want(t, o, audit.Succeeded, "already done")
}

// A subject holding quotes cannot change the filter: only the message with
// exactly that subject is found.
func TestPurgeSubjectWithQuotesCannotChangeTheFilter(t *testing.T) {
	h := newHarness(t, hopts{})
	evil := `Pay now' or subject ne 'x`
	hit, _ := h.sim.AddMessage("alice@contoso.com", m365sim.Message{Subject: evil, FromAddress: "a@evil.example"})
	other, _ := h.sim.AddMessage("alice@contoso.com", m365sim.Message{Subject: "Quarterly report", FromAddress: "cfo@contoso.com"})
	o, rec := h.do(request(actions.PurgeMail, actions.Target{}, map[string]any{
		"subject": evil, "received_after": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "mailboxes": []any{"alice@contoso.com"},
	}))
	want(t, o, audit.Succeeded, "deleted 1 of 1")
	if st, _ := h.sim.MessageState("alice@contoso.com", other); st != "inbox" {
		t.Errorf("the other message was touched: %s", st)
	}
	if !strings.Contains(string(rec.Before), `subject eq 'Pay now'' or subject ne ''x'`) {
		t.Errorf("filter not escaped: %s", rec.Before)
	}
	_ = hit
	// Soft delete moved it to Deleted Items; a re-run finds it done.
	o, _ = h.do(request(actions.PurgeMail, actions.Target{}, map[string]any{
		"subject": evil, "received_after": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "mailboxes": "alice@contoso.com",
	}))
	want(t, o, audit.Succeeded, "already done")
}

func TestPurgeRefusesUnnarrowedSearch(t *testing.T) {
	_, err := actions.ParseParams(actions.PurgeMail, actions.Target{}, map[string]any{"all_mailboxes": true})
	if err == nil || !strings.Contains(err.Error(), "no narrowing criterion") {
		t.Fatalf("err = %v", err)
	}
}

// The audit record's before lists what the search found, as Graph returned
// it: the id, the internet message id, the subject, and the sender's address
// taken from from.emailAddress (each page of the search decoded in one pass);
// a message of another campaign is neither listed nor touched.
func TestPurgeRecordListsFoundMessages(t *testing.T) {
	h := newHarness(t, hopts{})
	const phish = "<listed-7@evil.example>"
	id, err := h.sim.AddMessage("alice@contoso.com", m365sim.Message{InternetMessageID: phish, Subject: "Reset your password", FromAddress: "it-desk@evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := h.sim.AddMessage("alice@contoso.com", m365sim.Message{Subject: "Lunch", FromAddress: "colleague@contoso.com"})
	o, rec := h.do(request(actions.PurgeMail, actions.Target{MessageID: phish}, map[string]any{"mailboxes": "alice@contoso.com", "hard": true}))
	want(t, o, audit.Succeeded, "deleted 1 of 1")
	var before struct {
		Mailboxes []struct {
			Mailbox  string `json:"mailbox"`
			Found    int    `json:"found"`
			Messages []struct {
				ID, InternetMessageID, Subject, From, ReceivedDateTime string
			} `json:"messages"`
		} `json:"mailboxes"`
	}
	if err := json.Unmarshal(rec.Before, &before); err != nil {
		t.Fatalf("before: %v: %s", err, rec.Before)
	}
	if len(before.Mailboxes) != 1 || before.Mailboxes[0].Found != 1 || len(before.Mailboxes[0].Messages) != 1 {
		t.Fatalf("before lists %+v", before.Mailboxes)
	}
	m := before.Mailboxes[0].Messages[0]
	if m.ID != id || m.InternetMessageID != phish || m.Subject != "Reset your password" || m.From != "it-desk@evil.example" || m.ReceivedDateTime == "" {
		t.Errorf("listed message %+v, want id %s, %s, its subject and sender", m, id, phish)
	}
	if st, _ := h.sim.MessageState("alice@contoso.com", other); st != "inbox" {
		t.Errorf("the other campaign's message was touched: %s", st)
	}
}
