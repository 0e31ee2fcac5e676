package playbook

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// TestPrefilter: a rule that no index key selects and that needs Operation
// to contain one of four words is filed in the source's contains index
// under those words (its three selections' words, once each), so that an
// event meets it only when its Operation contains one; and it fires exactly
// where the reference evaluation of the rule fires.
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
	si := set.idx.bySrc[event.SourceAudit]
	if si == nil || len(si.rest) != 0 || len(si.contains) != 1 {
		t.Fatalf("audit index %+v: want the two units in one contains index, none always evaluated", si)
	}
	ci := si.contains[0]
	var words []string
	for _, w := range ci.words {
		words = append(words, w.s)
	}
	slices.Sort(words)
	if want := []string{"new-inboxrule", "set-inboxrule", "set-mailbox", "updateinboxrules"}; !slices.Equal(words, want) {
		t.Fatalf("words %q, want %q", words, want)
	}
	for j, us := range ci.units {
		if !slices.Equal(us, []int32{0, 1}) {
			t.Fatalf("word %q files units %v, want both", ci.words[j].s, us)
		}
	}
	for i := range set.idx.units {
		if _, ok := set.idx.units[i].node.(*cOr); !ok {
			t.Fatalf("unit %d: node %T, want the rule itself (the index tested the words)", i, set.idx.units[i].node)
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
		`{"Operation":["x","Set-InboxRule"],"Parameters":["RedirectTo"]}`,
		`{"Operation":"","Parameters":"ForwardTo"}`,
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
