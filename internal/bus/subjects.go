package bus

import (
	"strings"
)

// Stream and bucket names.
const (
	StreamEvents  = "EVENTS"
	StreamActions = "ACTIONS"
	StreamAudit   = "AUDIT"
	BucketState   = "responder_state"
)

// Token makes s safe to use as one NATS subject token: the characters that are
// special in subjects (dot, star, greater-than, whitespace) become '_', an empty
// string becomes '_'.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// EventSubject is m365.<tenant>.event.<source>.<kind>.
func EventSubject(tenant, source, kind string) string {
	return "m365." + Token(tenant) + ".event." + Token(source) + "." + Token(kind)
}

// EventsFilter matches every event of a tenant.
func EventsFilter(tenant string) string { return "m365." + Token(tenant) + ".event.>" }

// ActionSubject is responder.<tenant>.action.<name>.
func ActionSubject(tenant, action string) string {
	return "responder." + Token(tenant) + ".action." + Token(action)
}

// ActionsFilter matches every action request of a tenant.
func ActionsFilter(tenant string) string { return "responder." + Token(tenant) + ".action.>" }

// AuditSubject is responder.<tenant>.audit.<outcome>.<name>.
func AuditSubject(tenant, outcome, action string) string {
	return "responder." + Token(tenant) + ".audit." + Token(outcome) + "." + Token(action)
}

// AuditFilter matches every audit record of a tenant.
func AuditFilter(tenant string) string { return "responder." + Token(tenant) + ".audit.>" }

// AuditSelect matches the audit records of a tenant with one outcome and
// action; an empty part matches any ("" tenant too).
func AuditSelect(tenant, outcome, action string) string {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return Token(s)
	}
	return "responder." + tok(tenant) + ".audit." + tok(outcome) + "." + tok(action)
}

// KeyPart encodes s as one token of a KV key. KV keys allow only letters, digits
// and - _ / = . with '.' separating tokens; every other byte (and '.', '=') is
// written as =XX (hex), so the encoding is injective and stays readable:
// "alice@contoso.com" becomes "alice=40contoso=2Ecom".
func KeyPart(s string) string {
	if s == "" {
		return "=00"
	}
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	return b.String()
}
