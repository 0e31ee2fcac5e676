package event

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Exchange records name the mailbox they are about apart from the person who
// acted, and in Exchange's own identity forms. Sources:
//
//   - Mailbox audit records (UpdateInboxRules, MailItemsAccessed…): the mailbox
//     is MailboxOwnerUPN, the actor UserId ("Office 365 Management Activity API
//     schema", ExchangeMailbox schema, https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-schema#exchange-mailbox-schema).
//   - Admin cmdlet records (RecordType 1, ExchangeAdmin schema): Parameters holds
//     the cmdlet's parameters as [{Name, Value}] and ObjectId the object the
//     cmdlet changed, in Exchange's path form
//     ("NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen",
//     for an inbox rule followed by "\RuleName"). New-InboxRule and
//     Set-InboxRule take the mailbox in -Mailbox, and Set-InboxRule's -Identity
//     is "<mailbox>\<rule>"
//     (https://learn.microsoft.com/powershell/module/exchange/set-inboxrule#-identity);
//     Set-Mailbox takes it in -Identity
//     (https://learn.microsoft.com/powershell/module/exchange/set-mailbox#-identity),
//     which accepts a name, alias, distinguished name, canonical (path) name,
//     email address, GUID, legacyExchangeDN or UPN. The public SEKOIA capture
//     inbox_rule.json carries such a path-form ObjectId.
//
// Resolving the form to a user is the executor's job (Get-Mailbox accepts every
// one of them); the envelope keeps the value as the record spelled it.

// exchangeTargets returns the mailbox an Exchange record is about and the id of
// the inbox rule it concerns (mailbox audit's OperationProperties RuleId, kept as
// its exact digits: Exchange rule ids are 64-bit and lose precision in a
// float64). rec is the record's members by exact name; a record that is not an
// Exchange mailbox or rule record gives "".
func exchangeTargets(rec map[string]json.RawMessage) (mailbox, ruleID string) {
	op := strings.ToLower(jsonString(rec["Operation"]))
	if _, owner := rec["MailboxOwnerUPN"]; !exchangeOperation([]byte(op), owner) {
		return "", ""
	}
	params := nameValueList(rec["Parameters"])
	objectMailbox := func() string {
		s := jsonString(rec["ObjectId"])
		if i := strings.LastIndexByte(s, '\\'); i >= 0 {
			s = s[:i]
		}
		return strings.TrimSpace(s)
	}
	switch op {
	case "new-inboxrule", "set-inboxrule", "remove-inboxrule", "enable-inboxrule", "disable-inboxrule":
		mailbox = params["mailbox"]
		if mailbox == "" && op != "new-inboxrule" {
			if id := params["identity"]; strings.IndexByte(id, '\\') >= 0 {
				mailbox = id[:strings.LastIndexByte(id, '\\')]
			}
		}
		if mailbox == "" && strings.IndexByte(jsonString(rec["ObjectId"]), '\\') >= 0 {
			mailbox = objectMailbox()
		}
	case "set-mailbox":
		if mailbox = params["identity"]; mailbox == "" {
			mailbox = objectMailbox()
		}
	}
	if mailbox == "" {
		mailbox = jsonString(rec["MailboxOwnerUPN"])
	}
	if v, ok := nameValueRaw(rec["OperationProperties"], "RuleId"); ok {
		ruleID = exactInteger(v)
	}
	return strings.TrimSpace(mailbox), ruleID
}

// exchangeOperation reports whether an audit record's Operation may name a
// mailbox apart from its actor (so that exchangeTargets is worth running).
func exchangeOperation(op []byte, hasOwner bool) bool {
	if hasOwner {
		return true
	}
	switch strings.ToLower(string(op)) {
	case "new-inboxrule", "set-inboxrule", "remove-inboxrule", "enable-inboxrule", "disable-inboxrule", "set-mailbox":
		return true
	}
	return false
}

// exchangeMembers are the members exchangeTargets reads.
var exchangeMembers = [...]int{fOperation, fMailboxOwnerUPN, fParameters, fObjectId, fOperationProperties}

// exchangeTargets is exchangeTargets of the record's members, from the spans
// the scan recorded (the same members: exact names, the last of duplicates,
// as encoding/json fills a map), without decoding the rest of the record:
// mailbox-audit records (MailItemsAccessed and the like carry
// MailboxOwnerUPN) are most of an Exchange tenant's audit volume, and
// decoding each whole record took half of the poller's CPU.
func (r *record) exchangeTargets() (mailbox, ruleID string) {
	fs := &r.sc.top
	if r.wrap == wrapAuditQuery {
		fs = &r.sc.audit
	}
	m := make(map[string]json.RawMessage, len(exchangeMembers))
	for _, slot := range exchangeMembers {
		if sp := fs.v[slot]; sp.end != 0 {
			m[slotNames[slot]] = json.RawMessage(r.sc.data[sp.start:sp.end])
		}
	}
	return exchangeTargets(m)
}

// jsonString returns a JSON string's value, "" for anything else.
func jsonString(v json.RawMessage) string {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

type nameValue struct {
	Name  string          `json:"Name"`
	Value json.RawMessage `json:"Value"`
}

// nameValueList reads Exchange's [{Name, Value}] list into lower-cased names
// and string values (the first of each name). A list given as a string (the
// PowerShell command line, seen in old records) yields nothing.
func nameValueList(v json.RawMessage) map[string]string {
	var list []nameValue
	if len(v) == 0 || v[0] != '[' || json.Unmarshal(v, &list) != nil {
		return nil
	}
	out := make(map[string]string, len(list))
	for _, nv := range list {
		k := strings.ToLower(nv.Name)
		if _, ok := out[k]; !ok {
			out[k] = jsonString(nv.Value)
		}
	}
	return out
}

// nameValueRaw returns the raw Value of the first entry called name.
func nameValueRaw(v json.RawMessage, name string) (json.RawMessage, bool) {
	var list []nameValue
	if len(v) == 0 || v[0] != '[' || !mayHoldName(v, name) || json.Unmarshal(v, &list) != nil {
		return nil, false
	}
	for _, nv := range list {
		if strings.EqualFold(nv.Name, name) {
			return nv.Value, true
		}
	}
	return nil, false
}

// exactInteger returns the decimal digits of an integer given as a JSON number
// or string ("-5555555555555555555", 18446744073709551615), exactly as written;
// anything else gives "".
func exactInteger(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if len(s) > 0 && s[0] == '"' {
		s = strings.TrimSpace(jsonString(v))
	}
	d := strings.TrimPrefix(s, "-")
	if d == "" || len(d) > 40 {
		return ""
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return ""
		}
	}
	return s
}

// mayHoldName reports whether the JSON text v can hold a string equal to the
// ASCII name under strings.EqualFold: it contains the name in any ASCII case,
// or an escape (which could spell it). Without either, no decoded string is
// the name, and the list need not be decoded (mailbox-audit records carry
// OperationProperties with no RuleId).
func mayHoldName(v []byte, name string) bool {
	if bytes.IndexByte(v, '\\') >= 0 {
		return true
	}
	n, lower := len(name), strings.ToLower(name)
	for i := 0; i+n <= len(v); i++ {
		if asciiLowerEqual(v[i:i+n], lower) {
			return true
		}
	}
	return false
}
