package playbook

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// TestPrefilter: a rule that no index key selects and that needs Operation
// to contain one of four words runs behind one contains-any test on
// Operation (the words of its three selections, sorted, once each), and
// fires exactly where the reference evaluation of the rule fires.
func TestPrefilter(t *testing.T) {
	rule := "title: fwd\nlogsource: {product: m365, service: audit}\ndetection:\n" +
		"  sel_a: {Operation|contains: UpdateInboxRules, OperationProperties|contains: [Forward, Recipients]}\n" +
		"  sel_b: {Operation|contains: Set-Mailbox, Parameters|contains: [ForwardingSmtpAddress, ForwardingAddress]}\n" +
		"  sel_c: {Operation|contains: [New-InboxRule, Set-InboxRule, set-mailbox], Parameters|contains: [ForwardTo, RedirectTo]}\n" +
		"  condition: 1 of sel_*\n"
	r, err := ParseSigma("fwd.yml", []byte(rule))
	if err != nil {
		t.Fatal(err)
	}
	set := sigmaSet([]*SigmaRule{r}, 2)
	for i := range set.idx.units {
		u := &set.idx.units[i]
		and, ok := u.node.(*cAnd)
		if !ok || len(and.kids) != 2 {
			t.Fatalf("unit %d: node %T, want the prefilter and the rule", i, u.node)
		}
		pre, ok := and.kids[0].(*cField)
		if !ok || !pre.containsAny || len(pre.values) != 4 || !pre.shared {
			t.Fatalf("unit %d: prefilter %+v, want a shared contains-any of 4 values", i, and.kids[0])
		}
	}
	recs := []string{
		auditRec, // New-InboxRule, Parameters hold ForwardTo
		`{"Operation":"Set-Mailbox","Parameters":[{"Name":"ForwardingSmtpAddress","Value":"x@y.example"}]}`,
		`{"Operation":"SET-MAILBOX","Parameters":"DeliverToMailboxAndForward"}`,
		`{"Operation":"UpdateInboxRules","OperationProperties":[{"Name":"RuleActions","Value":"Forward"}]}`,
		`{"Operation":"MailItemsAccessed","Parameters":"ForwardTo"}`,
		`{"Operation":["Add-MailboxPermission","New-InboxRule"],"Parameters":"RedirectTo"}`,
		`{"Operation":"Nеw-InboxRule","Parameters":"ForwardTo"}`, // a Cyrillic е
		`{"Operation":"ſet-mailbox","Parameters":"ForwardingAddress"}`,
		`{"Operation":42,"Parameters":"ForwardTo"}`,
		`{"Parameters":"ForwardTo"}`,
		`{"Operation":`,
	}
	fired, quiet := 0, 0
	ctx := context.Background()
	for _, rec := range recs {
		env := &event.Envelope{Source: event.SourceAudit, ID: "p", Raw: json.RawMessage(rec)}
		want, wantErr := set.matchReference(ctx, env, nil)
		got, gotErr := set.Match(env)
		if !sameMatches(got, gotErr, want, wantErr) {
			t.Fatalf("%s:\n got %s\nwant %s", rec, showMatches(got, gotErr), showMatches(want, wantErr))
		}
		if len(want) > 0 {
			fired++
		} else {
			quiet++
		}
	}
	if fired < 4 || quiet < 4 {
		t.Fatalf("fired on %d records, quiet on %d: both kinds needed", fired, quiet)
	}
}
