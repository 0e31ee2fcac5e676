package playbook

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/responder-sec/responder/internal/event"
)

// Exchange parameters that forward mail, by operation.
var (
	inboxRuleForwardParams = []string{"ForwardTo", "ForwardAsAttachmentTo", "RedirectTo"}
	mailboxForwardParams   = []string{"ForwardingSmtpAddress", "ForwardingAddress"}
	bracketSMTP            = regexp.MustCompile(`(?i)\[smtp:([^\]\s]+)\]`)
	// "Display Name" [EX:/o=ExchangeLabs/ou=…/cn=Recipients/cn=…]: a recipient
	// named by its legacyExchangeDN, which only a directory object has.
	bracketEX = regexp.MustCompile(`(?i)\[(?:ex|x500):(/o=[^\]]+)\]`)
)

// ForwardRecipients returns the addresses an Exchange record makes mail go to:
// ForwardTo, ForwardAsAttachmentTo and RedirectTo of New-InboxRule and
// Set-InboxRule; ForwardingSmtpAddress and ForwardingAddress of Set-Mailbox;
// the Forward/Redirect recipients in the RuleActions of UpdateInboxRules (mailbox
// audit, a JSON string inside OperationProperties). Values may be smtp:-prefixed,
// "Name [SMTP:addr]" or ;-separated. Addresses are lower-cased, deduplicated and
// kept in order of appearance. Other records, and records too malformed to
// read, give nil.
func ForwardRecipients(env *event.Envelope) []string {
	var raw any
	if env == nil || json.Unmarshal(env.Raw, &raw) != nil {
		return nil
	}
	return forwardRecipients(raw)
}

// forwardingOperation: the operations forwardRecipients reads recipients of.
func forwardingOperation(op string) bool {
	switch strings.ToLower(op) {
	case "new-inboxrule", "set-inboxrule", "set-mailbox", "updateinboxrules":
		return true
	}
	return false
}

func forwardRecipients(raw any) []string {
	rec, ok := raw.(map[string]any)
	if !ok {
		return nil
	}
	op, _ := rec["Operation"].(string)
	return forwardRecipientsOf(op, rec["Parameters"], rec["OperationProperties"])
}

// forwardRecipientsOf is forwardRecipients of a record's Operation,
// Parameters and OperationProperties.
func forwardRecipientsOf(op string, params, props any) []string {
	var out []string
	seen := map[string]bool{}
	add := func(v string) {
		for _, a := range splitRecipients(v) {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	switch strings.ToLower(op) {
	case "new-inboxrule", "set-inboxrule":
		for _, name := range inboxRuleForwardParams {
			for _, v := range nameValues(params, name) {
				add(v)
			}
		}
		for _, v := range nameValues(props, "RuleActions") {
			for _, r := range ruleActionRecipients(v) {
				add(r)
			}
		}
	case "set-mailbox":
		for _, name := range mailboxForwardParams {
			for _, v := range nameValues(params, name) {
				add(v)
			}
		}
	case "updateinboxrules":
		for _, v := range nameValues(props, "RuleActions") {
			for _, r := range ruleActionRecipients(v) {
				add(r)
			}
		}
	}
	return out
}

// nameValues returns the string values of the [{Name, Value}] entries called name.
// A list given as a string (seen in the wild) yields nothing.
func nameValues(list any, name string) []string {
	items, ok := list.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		n, _ := m["Name"].(string)
		if !strings.EqualFold(n, name) {
			continue
		}
		if v, ok := m["Value"].(string); ok {
			out = append(out, v)
		}
	}
	return out
}

// ruleActionRecipients reads RuleActions: [{"ActionType":"Forward","Recipients":[…]}].
func ruleActionRecipients(s string) []string {
	v, ok := decodeEmbedded(s)
	if !ok {
		return nil
	}
	acts, ok := v.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, a := range acts {
		m, ok := a.(map[string]any)
		if !ok {
			continue
		}
		t, _ := m["ActionType"].(string)
		lt := strings.ToLower(t)
		if !strings.Contains(lt, "forward") && !strings.Contains(lt, "redirect") {
			continue
		}
		switch rs := m["Recipients"].(type) {
		case []any:
			for _, r := range rs {
				if s, ok := r.(string); ok {
					out = append(out, s)
				}
			}
		case string:
			out = append(out, rs)
		}
	}
	return out
}

// splitRecipients splits a ;-separated value and normalises each address.
func splitRecipients(v string) []string {
	var out []string
	for _, tok := range strings.Split(v, ";") {
		tok = strings.TrimSpace(tok)
		if m := bracketSMTP.FindStringSubmatch(tok); m != nil {
			tok = m[1]
		} else if m := bracketEX.FindStringSubmatch(tok); m != nil {
			tok = m[1]
		}
		tok = strings.Trim(tok, `"' <>`)
		for _, p := range []string{"x500:", "ex:"} {
			if len(tok) >= len(p) && strings.EqualFold(tok[:len(p)], p) {
				tok = tok[len(p):]
			}
		}
		if len(tok) >= 5 && strings.EqualFold(tok[:5], "smtp:") {
			tok = tok[5:]
		}
		tok = strings.ToLower(strings.TrimSpace(tok))
		if tok != "" {
			out = append(out, tok)
		}
	}
	return out
}

// isExchangeDN reports whether a recipient is a legacyExchangeDN / X500
// address ("/o=ExchangeLabs/ou=…/cn=Recipients/cn=…"): an object of the
// tenant's own directory, whatever its cn holds, so never external. See
// "legacyExchangeDN" in Exchange's X500 address documentation:
// https://learn.microsoft.com/exchange/troubleshoot/administration/imceaex-ndr
func isExchangeDN(addr string) bool {
	return len(addr) >= 3 && strings.EqualFold(addr[:3], "/o=")
}

// domainOf returns the lower-cased domain of an address, "" without one.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

// isExternal reports whether addr is outside the tenant: it has a domain, and
// that domain is neither one of the verified domains nor the domain of the
// user the record is about (a UPN suffix is always a verified domain).
// Recipients without a domain (aliases, legacyExchangeDN) name directory
// objects and count as internal.
func (s *Set) isExternal(addr, user string) bool {
	if isExchangeDN(addr) {
		return false
	}
	d := domainOf(addr)
	if d == "" {
		return false
	}
	if s != nil && s.verified[d] {
		return false
	}
	if ud := domainOf(user); ud != "" && ud == d {
		return false
	}
	return true
}
