package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The reference of record.exchangeTargets: the whole record (inside an
// audit-query wrapper's auditData) decoded into a map, as Normalize did
// before it read the members from the scan's spans.

// exchangeTargetsOf is exchangeTargets of a record's bytes.
func exchangeTargetsOf(rec []byte) (mailbox, ruleID string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(rec, &m) != nil {
		return "", ""
	}
	return exchangeTargets(m)
}

// auditRecordBytes returns the bytes of the Microsoft record itself (inside an
// audit-query wrapper's auditData).
func (r *record) auditRecordBytes() []byte {
	if r.wrap == wrapAuditQuery {
		v := r.sc.top.v[fauditData]
		return bytes.TrimSpace(r.sc.data[v.start:v.end])
	}
	return r.sc.data
}

// TestExchangeTargetsFromSpans: the mailbox and rule id read from the scan's
// spans equal the reference's on every public fixture record and on records
// made to disagree if anything differed: duplicate and escaped member names,
// names in another case, both wrappers, Parameters as a string, rule ids as
// numbers and text.
func TestExchangeTargetsFromSpans(t *testing.T) {
	recs := fixtureRecords(t)
	if len(recs) == 0 {
		t.Fatal("no public fixture records (../shared/fixtures/public beside the checkout)")
	}
	crafted := []string{
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"a@contoso.com"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"a@contoso.com","MailboxOwnerUPN":"b@contoso.com"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"Send","MailboxOwnerUPN":"a@contoso.com","Mailbox\u004fwnerUPN":"c@contoso.com"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"Send","mailboxownerupn":"a@contoso.com"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"Set-InboxRule","UserId":"admin@contoso.com","Parameters":[{"Name":"Identity","Value":"megan\\r1"}],"Parameters":"Set-InboxRule -Identity x"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"set-mailbox","ObjectId":"contoso.onmicrosoft.com/megan.bowen","Parameters":[{"Name":"Identity","Value":"megan.bowen"},{"Name":"Identity","Value":"other"}]}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"UpdateInboxRules","MailboxOwnerUPN":"u@contoso.com","OperationProperties":[{"Name":"RuleId","Value":18446744073709551615}],"OperationProperties":[{"Name":"RuleId","Value":"7"}]}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"Remove-InboxRule","ObjectId":"x\\y\\z","Obj\u0065ctId":"p\\q"}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"u@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"NAME":"ruleID","Value":"42"}]}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"u@contoso.com","OperationProperties":[{"Name":"Rule\u0049d","Value":"43"}]}`,
		`{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"u@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}]}`,
		`{"auditData":{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"New-InboxRule","Parameters":[{"Name":"Mailbox","Value":"m@contoso.com"}]},"Operation":"Set-Mailbox","MailboxOwnerUPN":"w@contoso.com"}`,
		`{"time":"2025-01-02T03:04:05Z","category":"Audit","properties":{"Id":"1","CreationTime":"2025-01-02T03:04:05","Operation":"MailItemsAccessed","MailboxOwnerUPN":"p@contoso.com"},"MailboxOwnerUPN":"top@contoso.com","Operation":"Set-Mailbox"}`,
	}
	for _, c := range crafted {
		recs = append(recs, []byte(c))
	}
	compared := 0
	for i, raw := range recs {
		var r record
		if r.parse(raw) != nil {
			continue
		}
		gm, gr := r.exchangeTargets()
		wm, wr := exchangeTargetsOf(r.auditRecordBytes())
		if gm != wm || gr != wr {
			t.Errorf("record %d %s: spans give %q %q, the reference %q %q", i, abbrev(raw), gm, gr, wm, wr)
		}
		compared++
	}
	t.Logf("%d records compared", compared)
}

func abbrev(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%s…", b[:200])
	}
	return string(b)
}

// refNameValueRaw is nameValueRaw without the mayHoldName pre-check.
func refNameValueRaw(v json.RawMessage, name string) (json.RawMessage, bool) {
	var list []nameValue
	if len(v) == 0 || v[0] != '[' || json.Unmarshal(v, &list) != nil {
		return nil, false
	}
	for _, nv := range list {
		if strings.EqualFold(nv.Name, name) {
			return nv.Value, true
		}
	}
	return nil, false
}

// TestNameValueRawPrecheck: skipping the decoding of a list that cannot hold
// the name changes no answer, on every OperationProperties and Parameters of
// the public fixtures and on lists that spell RuleId in other cases, with
// escapes, or under another key case.
func TestNameValueRawPrecheck(t *testing.T) {
	lists := []string{
		`[{"Name":"RuleId","Value":"1"}]`, `[{"NAME":"ruleID","Value":"2"}]`, `[{"Name":"Rule\u0049d","Value":"3"}]`,
		`[{"name":"RULEID","Value":4}]`, `[{"Name":"MailAccessType","Value":"Bind"}]`, `[{"Name":"Rule Id","Value":"5"}]`,
		`[{"Name":"R\u0075leId","Value":"6"},{"Name":"RuleId","Value":"7"}]`, `[]`, `[{"Value":"RuleId"}]`,
	}
	for _, raw := range fixtureRecords(t) {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		for _, k := range []string{"OperationProperties", "Parameters", "ExtendedProperties"} {
			if v, ok := m[k]; ok {
				lists = append(lists, string(v))
			}
		}
	}
	found := 0
	for _, l := range lists {
		gv, gok := nameValueRaw(json.RawMessage(l), "RuleId")
		wv, wok := refNameValueRaw(json.RawMessage(l), "RuleId")
		if gok != wok || string(gv) != string(wv) {
			t.Errorf("%s: got %s %v, want %s %v", abbrev([]byte(l)), gv, gok, wv, wok)
		}
		if wok {
			found++
		}
	}
	if found < 6 {
		t.Fatalf("only %d lists hold RuleId: the cases do not test the pre-check", found)
	}
	t.Logf("%d lists compared, %d hold RuleId", len(lists), found)
}
