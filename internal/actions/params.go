package actions

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Params is the typed, validated form of a request's params (and of the parts
// of its target the Graph calls need). Only the fields of the request's action
// are set.
type Params struct {
	// Scope of delete_forward_rules ("external" by default) and
	// disable_forward_rules ("all" by default): "external" or "all".
	Scope string
	// RuleIDs are the rules enable_forward_rules re-enables.
	RuleIDs []string
	// Rules are the snapshots restore_forward_rules recreates (Graph messageRule
	// JSON objects as read before deletion).
	Rules []json.RawMessage
	// Purge is purge_mail's search.
	Purge *PurgeQuery
	// Prefix is block_ip's or unblock_ip's range, masked.
	Prefix netip.Prefix
	// Expires is how long a block_ip lasts (0 = until unblocked).
	Expires time.Duration
	// Recipients are the forwarding addresses the triggering event named
	// (remove_mailbox_forwarding; informational, compared in the detail).
	Recipients []string
	// Forwarding is the mailbox forwarding restore_mailbox_forwarding sets.
	Forwarding *MailboxForwarding
	// Sender is block_sender's or unblock_sender's address or domain, lower
	// case; SenderIsDomain says which. NoExpiration: block_sender's
	// params.expires "never"; EntryID: the Tenant Allow/Block List entry
	// unblock_sender removes (the one block_sender created).
	Sender         string
	SenderIsDomain bool
	NoExpiration   bool
	EntryID        string
	// Selective: isolate_device's selective isolation (Outlook, Teams and
	// Skype for Business keep working).
	Selective bool
	// Indicator is what a Defender indicator action blocks (block_file,
	// block_url, block_domain, block_device_ip, remove_indicator);
	// IndicatorID is the indicator remove_indicator deletes (the one the
	// block created).
	Indicator   *Indicator
	IndicatorID string
	// UndoOf is the request an inverse request reverses (set by undo).
	UndoOf string
	// Values are the parameters of an action declared by its Args alone (no
	// Parse of its own), typed by kind: read them with String, Strings,
	// Bool, Duration, Time and Objects.
	Values Values
}

// MailboxForwarding is a mailbox's own forwarding as Set-Mailbox sets it and
// Get-Mailbox reports it.
type MailboxForwarding struct {
	// SMTPAddress is ForwardingSmtpAddress, "smtp:" prefixed as Exchange
	// reports it ("" = none).
	SMTPAddress string `json:"forwarding_smtp_address"`
	// Address is ForwardingAddress: a recipient of the organisation (its
	// identity as Exchange reports it; "" = none).
	Address string `json:"forwarding_address"`
	// DeliverAndForward is DeliverToMailboxAndForward: keep a copy in the
	// mailbox as well.
	DeliverAndForward bool `json:"deliver_to_mailbox_and_forward"`
}

// Forwards reports whether any forwarding is set.
func (f MailboxForwarding) Forwards() bool { return f.SMTPAddress != "" || f.Address != "" }

// PurgeQuery is what purge_mail looks for and where.
type PurgeQuery struct {
	MessageID      string    `json:"message_id,omitempty"`
	Sender         string    `json:"sender,omitempty"`
	Subject        string    `json:"subject,omitempty"`
	ReceivedAfter  time.Time `json:"received_after,omitzero"`
	ReceivedBefore time.Time `json:"received_before,omitzero"`
	Mailboxes      []string  `json:"mailboxes,omitempty"`
	AllMailboxes   bool      `json:"all_mailboxes,omitempty"`
	Hard           bool      `json:"hard,omitempty"`
}

// Limits of the parameters.
const (
	MaxPurgeMailboxes = 500
	MaxExpiry         = 90 * 24 * time.Hour
	MinExpiry         = time.Minute
	MaxRestoreRules   = 100
)

var (
	msgIDRE  = regexp.MustCompile(`^<[\x21-\x3b\x3d\x3f-\x7e]{1,994}@[\x21-\x3b\x3d\x3f-\x7e]{1,994}>$`)
	senderRE = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$`)
)

// ValidMessageID reports whether s is an internet message id: <left@right> of
// printable ASCII without angle brackets or spaces.
func ValidMessageID(s string) bool { return len(s) <= 998 && msgIDRE.MatchString(s) }

// ParseIPTarget turns an address or CIDR into a masked prefix (an address
// becomes /32 or /128).
func ParseIPTarget(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	a = a.Unmap()
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q carries a zone", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseParams validates params for action n and returns their typed form. Any
// error is a *RejectError naming the parameter.
func ParseParams(n Name, t Target, params map[string]any) (Params, error) {
	var p Params
	spec, ok := Lookup(n)
	if !ok {
		return p, reject("unknown action %q", n)
	}
	names := spec.ArgNames()
	for k := range params {
		if k == "undo_of" || slices.Contains(names, k) {
			continue
		}
		if len(names) == 0 {
			return p, reject("%s takes no params (got %q)", n, k)
		}
		return p, reject("%s: unknown param %q (accepted: %s)", n, k, strings.Join(names, ", "))
	}
	if v, ok := params["undo_of"]; ok {
		s, _ := v.(string)
		if !uuidRE.MatchString(s) {
			return p, reject("params.undo_of must be a request id")
		}
		p.UndoOf = s
	}
	if len(spec.Args) == 0 && spec.Parse == nil {
		return p, nil
	}
	// Every declared parameter is checked against its kind (what the JSON
	// Schema says); an action with a Parse of its own then parses them into
	// its typed fields (unblock_ip declares none but reads its target).
	q, err := parseArgs(spec, t, params)
	if err != nil {
		return p, err
	}
	if spec.Parse != nil {
		values := q.Values
		if q, err = spec.Parse(t, params); err != nil {
			return p, err
		}
		q.Values = values
	}
	q.UndoOf = p.UndoOf
	return q, nil
}

// parseDisableRules: disable_forward_rules disables every forwarding rule
// unless params.scope is "external" (recipients and rule are informational).
func parseDisableRules(_ Target, params map[string]any) (Params, error) {
	return parseScope(params, "all")
}

func parseDeleteRules(_ Target, params map[string]any) (Params, error) {
	return parseScope(params, "external")
}

func parseScope(params map[string]any, def string) (Params, error) {
	p := Params{Scope: def}
	if v, ok := params["scope"]; ok {
		s, _ := v.(string)
		switch s {
		case "external", "all":
			p.Scope = s
		default:
			return p, reject("params.scope must be external or all (got %v)", v)
		}
	}
	return p, nil
}

func parseEnableRules(_ Target, params map[string]any) (Params, error) {
	var p Params
	ids, err := stringList(params, "rule_ids")
	if err != nil {
		return p, err
	}
	if len(ids) == 0 {
		return p, reject("enable_forward_rules needs params.rule_ids")
	}
	for _, id := range ids {
		if !validGraphID(id) {
			return p, reject("params.rule_ids: %q is not a rule id", id)
		}
	}
	p.RuleIDs = ids
	return p, nil
}

func parseRestoreRules(_ Target, params map[string]any) (Params, error) {
	var p Params
	raw, ok := params["rules"].([]any)
	if !ok || len(raw) == 0 {
		return p, reject("restore_forward_rules needs params.rules (the rule snapshots)")
	}
	if len(raw) > MaxRestoreRules {
		return p, reject("params.rules holds %d rules; at most %d", len(raw), MaxRestoreRules)
	}
	for i, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			return p, reject("params.rules[%d] is not a rule object", i)
		}
		if s, _ := m["displayName"].(string); strings.TrimSpace(s) == "" {
			return p, reject("params.rules[%d] has no displayName", i)
		}
		if _, ok := m["actions"].(map[string]any); !ok {
			return p, reject("params.rules[%d] has no actions", i)
		}
		b, err := json.Marshal(m)
		if err != nil {
			return p, reject("params.rules[%d]: %v", i, err)
		}
		p.Rules = append(p.Rules, b)
	}
	return p, nil
}

func parseRecipients(_ Target, params map[string]any) (Params, error) {
	rs, err := stringList(params, "recipients")
	return Params{Recipients: rs}, err
}

func parseRestoreForwarding(_ Target, params map[string]any) (Params, error) {
	f, err := parseForwarding(params)
	return Params{Forwarding: f}, err
}

func parseIPParams(t Target, params map[string]any) (Params, error) {
	var p Params
	pfx, err := ParseIPTarget(t.IP)
	if err != nil {
		return p, reject("target.ip: %v", err)
	}
	p.Prefix = pfx
	if v, ok := params["expires"]; ok {
		d, err := parseExpiry(v)
		if err != nil {
			return p, err
		}
		p.Expires = d
	}
	return p, nil
}

func parsePurgeParams(t Target, params map[string]any) (Params, error) {
	q, err := parsePurge(t, params)
	return Params{Purge: q}, err
}

// parseForwarding validates restore_mailbox_forwarding's params: an SMTP
// address (with or without "smtp:") and/or a recipient identity.
func parseForwarding(params map[string]any) (*MailboxForwarding, error) {
	f := &MailboxForwarding{}
	smtp, err := stringParam(params, "forwarding_smtp_address")
	if err != nil {
		return nil, err
	}
	if smtp != "" {
		addr := smtp
		if len(addr) >= 5 && strings.EqualFold(addr[:5], "smtp:") {
			addr = addr[5:]
		}
		if !senderRE.MatchString(addr) {
			return nil, reject("params.forwarding_smtp_address %q is not an e-mail address", smtp)
		}
		f.SMTPAddress = "smtp:" + addr
	}
	if f.Address, err = stringParam(params, "forwarding_address"); err != nil {
		return nil, err
	}
	if len(f.Address) > 256 || strings.ContainsFunc(f.Address, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, reject("params.forwarding_address must be at most 256 printable characters")
	}
	if f.DeliverAndForward, err = boolParam(params, "deliver_to_mailbox_and_forward"); err != nil {
		return nil, err
	}
	if !f.Forwards() {
		return nil, reject("restore_mailbox_forwarding needs params.forwarding_smtp_address and/or params.forwarding_address")
	}
	return f, nil
}

// validGraphID accepts Exchange and Entra ids (base64-ish, GUIDs).
func validGraphID(s string) bool {
	if s == "" || len(s) > 512 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+/=-_", c)) {
			return false
		}
	}
	return true
}

func parseExpiry(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, reject("params.expires must be a duration such as 24h or 7d")
	}
	d, ok := durationOf(s)
	if !ok {
		return 0, reject("params.expires %q is not a duration such as 24h or 7d", s)
	}
	if d < MinExpiry || d > MaxExpiry {
		return 0, reject("params.expires %s is outside %s..%s", s, MinExpiry, MaxExpiry)
	}
	return d, nil
}

// durationOf reads a Go duration (24h, 90m) or a number of days (7d).
func durationOf(s string) (time.Duration, bool) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 || d > 100000 {
			return 0, false
		}
		return time.Duration(d) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func boolParam(params map[string]any, k string) (bool, error) {
	v, ok := params[k]
	if !ok {
		return false, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(b) {
		case "true":
			return true, nil
		case "false", "":
			return false, nil
		}
	}
	return false, reject("params.%s must be true or false", k)
}

func stringParam(params map[string]any, k string) (string, error) {
	v, ok := params[k]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", reject("params.%s must be a string", k)
	}
	return strings.TrimSpace(s), nil
}

// stringList accepts a JSON array of strings or one comma-separated string.
func stringList(params map[string]any, k string) ([]string, error) {
	v, ok := params[k]
	if !ok || v == nil {
		return nil, nil
	}
	var out []string
	switch x := v.(type) {
	case string:
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, reject("params.%s must hold strings", k)
			}
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []string:
		out = x
	default:
		return nil, reject("params.%s must be a list of strings", k)
	}
	return out, nil
}

func timeParam(params map[string]any, k string) (time.Time, error) {
	s, err := stringParam(params, k)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, reject("params.%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", k, s)
	}
	return t.UTC(), nil
}

func parsePurge(t Target, params map[string]any) (*PurgeQuery, error) {
	q := &PurgeQuery{MessageID: t.MessageID}
	var err error
	if q.Sender, err = stringParam(params, "sender"); err != nil {
		return nil, err
	}
	if q.Sender != "" && !senderRE.MatchString(q.Sender) {
		return nil, reject("params.sender %q is not an e-mail address", q.Sender)
	}
	if q.Subject, err = stringParam(params, "subject"); err != nil {
		return nil, err
	}
	if len(q.Subject) > 255 || strings.ContainsFunc(q.Subject, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, reject("params.subject must be at most 255 printable characters")
	}
	if q.ReceivedAfter, err = timeParam(params, "received_after"); err != nil {
		return nil, err
	}
	if q.ReceivedBefore, err = timeParam(params, "received_before"); err != nil {
		return nil, err
	}
	if !q.ReceivedAfter.IsZero() && !q.ReceivedBefore.IsZero() && !q.ReceivedAfter.Before(q.ReceivedBefore) {
		return nil, reject("params.received_after must be before params.received_before")
	}
	if q.MessageID == "" && q.Sender == "" && q.Subject == "" {
		return nil, reject("purge_mail refuses a search with no narrowing criterion: give target.message_id, or params.sender and/or params.subject")
	}
	if q.MessageID == "" && q.ReceivedAfter.IsZero() {
		return nil, reject("purge_mail by sender or subject needs a received-time window (params.received_after, optionally received_before)")
	}
	if q.Mailboxes, err = stringList(params, "mailboxes"); err != nil {
		return nil, err
	}
	for _, m := range q.Mailboxes {
		if !ValidUser(m) {
			return nil, reject("params.mailboxes: %q is not a UPN or object id", m)
		}
	}
	if len(q.Mailboxes) > MaxPurgeMailboxes {
		return nil, reject("params.mailboxes lists %d mailboxes; at most %d (use all_mailboxes)", len(q.Mailboxes), MaxPurgeMailboxes)
	}
	if q.AllMailboxes, err = boolParam(params, "all_mailboxes"); err != nil {
		return nil, err
	}
	if q.AllMailboxes == (len(q.Mailboxes) > 0) {
		return nil, reject("purge_mail needs either params.mailboxes or params.all_mailboxes=true (not both)")
	}
	if q.Hard, err = boolParam(params, "hard"); err != nil {
		return nil, err
	}
	return q, nil
}

// ODataString is s as an OData string literal: quoted, with every single quote
// doubled, so that no value can end the literal and change the filter.
func ODataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ODataTime is an unquoted DateTimeOffset literal.
func ODataTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// Filter is the $filter for the messages q looks for. Every value is a literal
// built by ODataString or ODataTime; the property paths are fixed.
func (q *PurgeQuery) Filter() string {
	var parts []string
	if q.MessageID != "" {
		parts = append(parts, "internetMessageId eq "+ODataString(q.MessageID))
	}
	if !q.ReceivedAfter.IsZero() {
		parts = append(parts, "receivedDateTime ge "+ODataTime(q.ReceivedAfter))
	}
	if !q.ReceivedBefore.IsZero() {
		parts = append(parts, "receivedDateTime lt "+ODataTime(q.ReceivedBefore))
	}
	if q.Sender != "" {
		parts = append(parts, "from/emailAddress/address eq "+ODataString(q.Sender))
	}
	if q.Subject != "" {
		parts = append(parts, "subject eq "+ODataString(q.Subject))
	}
	return strings.Join(parts, " and ")
}
