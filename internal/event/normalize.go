package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors returned by DetectSource and Normalize. They are wrapped with the name of
// the source and of the field concerned; test for them with errors.Is. A record that
// fails to normalise is not retried: the caller dead-letters it.
var (
	// ErrUnknownSource: the record has none of the shapes Responder ingests (for
	// example a Graph directoryAudit, a conditional access policy or an error body).
	ErrUnknownSource = errors.New("unrecognised record shape")
	// ErrMissingField: a field the envelope needs (id, time) is absent, null or empty.
	ErrMissingField = errors.New("missing field")
	// ErrBadField: a field the envelope needs is present but cannot be read.
	ErrBadField = errors.New("invalid field")
)

// Kind values set by the normalisers besides the ones copied from the record.
const (
	// KindSignInSuccess is the kind of a sign-in whose status.errorCode is 0.
	KindSignInSuccess = "success"
	// KindSignInFailure is the kind of a sign-in with any other status.errorCode
	// (wrong password 50126, MFA denied 500121, blocked by CA 53003, interrupts such
	// as 50074 "strong auth required"…). The precise code stays in Raw.
	KindSignInFailure = "failure"
	// KindUnknown is used when the field a kind is taken from is absent, so that
	// the subject m365.<tenant>.event.<source>.<kind> always has a kind token.
	KindUnknown = "unknown"
)

// DetectSource recognises a raw Microsoft record by its shape:
//
//   - Management Activity API record (audit): has CreationTime and one of
//     Operation, RecordType or Workload. A Graph audit log query record
//     (/security/auditLog/queries/{id}/records) carrying such a record in
//     auditData is an audit record too.
//   - Graph riskDetection: riskEventType plus lastUpdatedDateTime, detectedDateTime
//     or activityDateTime.
//   - Graph riskyUser: riskLastUpdatedDateTime, or riskLevel and userPrincipalName
//     without riskEventType or createdDateTime.
//   - Graph signIn: createdDateTime plus one of status, appId, appDisplayName,
//     ipAddress, clientAppUsed or conditionalAccessStatus.
//
// An Azure Monitor diagnostic-settings envelope ({time, category, properties}) is
// classified by its category alone (SignInLogs, NonInteractiveUserSignInLogs,
// ServicePrincipalSignInLogs, ManagedIdentitySignInLogs → signin; UserRiskEvents →
// risk_detection; RiskyUsers → risky_user); any other category (AuditLogs,
// MicrosoftGraphActivityLogs…) is ErrUnknownSource. Field names are matched exactly
// (Microsoft's casing). Presence is enough for detection, even with a null value;
// Normalize then reports missing values.
func DetectSource(raw json.RawMessage) (Source, error) {
	r, err := parseRecord(raw)
	if err != nil {
		return "", err
	}
	return r.detect()
}

// Normalize detects the source of raw and builds its envelope (see NormalizeAs).
func Normalize(tenantID string, raw json.RawMessage) (Envelope, error) {
	r, err := parseRecord(raw)
	if err != nil {
		return Envelope{}, err
	}
	src, err := r.detect()
	if err != nil {
		return Envelope{}, err
	}
	return r.normalize(src, tenantID, raw)
}

// NormalizeAs builds the envelope of a record whose source the caller already
// knows (a feed polling one Graph resource). A diagnostic-settings envelope or a
// Graph audit log query record is unwrapped as in DetectSource. The rules:
//
// ID (required: without an id the record cannot be deduplicated, so it is an error):
// audit Id; signin id; risk_detection id + ":" + Time; risky_user id + ":" + Time,
// with Time in RFC 3339 (UTC, nanoseconds trimmed), so that a detection or a risky
// user whose state changes later is a new event while a re-poll of the same state
// deduplicates, whatever spelling of the timestamp Microsoft used.
//
// Kind: audit Operation; signin "success" when status.errorCode is 0 and "failure"
// otherwise (playbooks trigger on failures, the code is in Raw); risk_detection
// riskEventType; risky_user riskLevel. KindUnknown when the field is absent.
//
// Time (required, always UTC): audit CreationTime (zone-less means UTC); signin
// createdDateTime; risk_detection lastUpdatedDateTime, else detectedDateTime, else
// activityDateTime; risky_user riskLastUpdatedDateTime; for a diagnostic envelope
// whose record has none of these, the envelope's time. Accepted spellings: RFC 3339
// with any fraction (Graph's 7 digits) and Z or an offset, the same without a zone
// (UTC), a space instead of the T, an unpadded hour ("T9:59:27.958Z") and the
// diagnostic export's "8/22/2022 6:11:52 PM". A zero time (0001-01-01) counts as
// absent.
//
// TenantID: the record's own tenant when it is a GUID (audit OrganizationId; for a
// diagnostic envelope its tenantId, else properties.tenantId; for a Graph record
// tenantId), else the tenantID argument. Anonymised or placeholder values are
// ignored.
//
// User (a UPN, or empty): audit UserId, else MailboxOwnerUPN (Exchange mailbox
// audit, where UserId may be an app or a system account); Graph userPrincipalName.
// A value is kept only if it looks like a UPN (one '@', a dotted domain, no spaces,
// colons, backslashes or brackets): "NT AUTHORITY\SYSTEM (…)", "SecurityComplianceAlerts",
// anonymised values and SharePoint guest URNs ("urn:spo:guest#a@b.com", an external
// e-mail address, not the guest's UPN in the tenant) give an empty User. The case
// is kept as Microsoft wrote it; compare UPNs case-insensitively.
//
// UserID (an Entra object id, or empty): audit UserKey, Graph userId, and for a
// riskyUser its id (which is the user's object id), each only when it is a GUID.
//
// IP (bare address, or empty): audit ClientIP, else ClientIPAddress, else
// ActorIpAddress (the first that holds an address); Graph ipAddress. Ports and
// brackets are stripped ("1.2.3.4:63070", "[2001:db8::1]:443", "[10.1.2.3]"), zones
// dropped, IPv4-mapped IPv6 unmapped ("::ffff:1.2.3.4" → "1.2.3.4"), and the
// address printed as net/netip does (IPv6 lower-case, compressed). Host names,
// "<null>", placeholders and the unspecified addresses 0.0.0.0 and :: give an empty
// IP, not an error.
//
// Raw is a copy of the input bytes, unchanged (so a caller may reuse its buffer).
// Everything else in the record (Parameters, ExtendedProperties, which are arrays
// or sometimes strings) is left to Raw and never parsed here.
func NormalizeAs(src Source, tenantID string, raw json.RawMessage) (Envelope, error) {
	if !src.Valid() {
		return Envelope{}, fmt.Errorf("event: source %q: %w", src, ErrUnknownSource)
	}
	r, err := parseRecord(raw)
	if err != nil {
		return Envelope{}, err
	}
	return r.normalize(src, tenantID, raw)
}

// wrapper kinds
const (
	wrapNone = iota
	wrapDiagnostic
	wrapAuditQuery
)

// record is a decoded record and the wrapper it arrived in, if any.
type record struct {
	fields  object // the Microsoft record itself
	wrapper object // the diagnostic envelope or Graph audit query record; nil if bare
	wrap    int
}

func parseRecord(raw json.RawMessage) (record, error) {
	top, err := decodeObject(raw)
	if err != nil {
		return record{}, fmt.Errorf("event: decode record: %w", err)
	}
	if props, ok := top.object("properties"); ok && top.str("category") != "" {
		return record{fields: props, wrapper: top, wrap: wrapDiagnostic}, nil
	}
	if ad, ok := top.object("auditData"); ok && isAuditShape(ad) {
		return record{fields: ad, wrapper: top, wrap: wrapAuditQuery}, nil
	}
	return record{fields: top}, nil
}

func (r record) detect() (Source, error) {
	if r.wrap == wrapDiagnostic {
		cat := r.wrapper.str("category")
		if src, ok := diagnosticSource(cat); ok {
			return src, nil
		}
		return "", fmt.Errorf("event: diagnostic category %q: %w", cat, ErrUnknownSource)
	}
	o := r.fields
	switch {
	case isAuditShape(o):
		return SourceAudit, nil
	case o.has("riskEventType") && (o.has("lastUpdatedDateTime") || o.has("detectedDateTime") || o.has("activityDateTime")):
		return SourceRiskDetection, nil
	case o.has("riskLastUpdatedDateTime"),
		o.has("riskLevel") && o.has("userPrincipalName") && !o.has("riskEventType") && !o.has("createdDateTime"):
		return SourceRiskyUser, nil
	case o.has("createdDateTime") && (o.has("status") || o.has("appId") || o.has("appDisplayName") ||
		o.has("ipAddress") || o.has("clientAppUsed") || o.has("conditionalAccessStatus")):
		return SourceSignIn, nil
	}
	if v, ok := o["value"]; ok && bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
		return "", fmt.Errorf("event: a collection response (\"value\" array), not one record: %w", ErrUnknownSource)
	}
	return "", fmt.Errorf("event: %w", ErrUnknownSource)
}

func isAuditShape(o object) bool {
	return o.has("CreationTime") && (o.has("Operation") || o.has("RecordType") || o.has("Workload"))
}

func diagnosticSource(category string) (Source, bool) {
	switch strings.ToLower(category) {
	case "signinlogs", "noninteractiveusersigninlogs", "serviceprincipalsigninlogs", "managedidentitysigninlogs":
		return SourceSignIn, true
	case "userriskevents":
		return SourceRiskDetection, true
	case "riskyusers":
		return SourceRiskyUser, true
	}
	return "", false
}

func (r record) normalize(src Source, tenantID string, raw json.RawMessage) (Envelope, error) {
	env := Envelope{Source: src, TenantID: tenantID, Raw: bytes.Clone(raw)}
	var err error
	switch src {
	case SourceAudit:
		err = r.audit(&env)
	case SourceSignIn:
		err = r.signIn(&env)
	case SourceRiskDetection:
		err = r.riskDetection(&env)
	case SourceRiskyUser:
		err = r.riskyUser(&env)
	}
	if err != nil {
		return Envelope{}, fmt.Errorf("event: %s record: %w", src, err)
	}
	return env, nil
}

func (r record) audit(env *Envelope) error {
	o := r.fields
	id, err := o.required("Id")
	if err != nil {
		return err
	}
	t, err := r.timeOf("CreationTime")
	if err != nil {
		return err
	}
	env.ID, env.Time = id, t
	env.Kind = orUnknown(o.str("Operation"))
	env.TenantID = firstGUID(env.TenantID, o.str("OrganizationId"), r.wrapper.str("organizationId"))
	env.User = firstUPN(o.str("UserId"), o.str("MailboxOwnerUPN"), r.wrapper.str("userPrincipalName"))
	env.UserID = firstGUID("", o.str("UserKey"), r.wrapper.str("userId"))
	env.IP = firstIP(o.str("ClientIP"), o.str("ClientIPAddress"), o.str("ActorIpAddress"))
	return nil
}

func (r record) signIn(env *Envelope) error {
	o := r.fields
	id, err := o.required("id")
	if err != nil {
		return err
	}
	t, err := r.timeOf("createdDateTime")
	if err != nil {
		return err
	}
	env.ID, env.Time = id, t
	env.Kind = KindUnknown
	if status, ok := o.object("status"); ok {
		if code, ok := status.number("errorCode"); ok {
			env.Kind = KindSignInFailure
			if code == 0 {
				env.Kind = KindSignInSuccess
			}
		}
	}
	r.graphIdentity(env)
	return nil
}

func (r record) riskDetection(env *Envelope) error {
	o := r.fields
	id, err := o.required("id")
	if err != nil {
		return err
	}
	t, err := r.timeOf("lastUpdatedDateTime", "detectedDateTime", "activityDateTime")
	if err != nil {
		return err
	}
	env.ID, env.Time = id+":"+t.Format(time.RFC3339Nano), t
	env.Kind = orUnknown(o.str("riskEventType"))
	r.graphIdentity(env)
	return nil
}

func (r record) riskyUser(env *Envelope) error {
	o := r.fields
	id, err := o.required("id")
	if err != nil {
		return err
	}
	t, err := r.timeOf("riskLastUpdatedDateTime")
	if err != nil {
		return err
	}
	env.ID, env.Time = id+":"+t.Format(time.RFC3339Nano), t
	env.Kind = orUnknown(o.str("riskLevel"))
	r.graphIdentity(env)
	if env.UserID == "" {
		env.UserID = firstGUID("", id) // a riskyUser's id is the user's object id
	}
	return nil
}

// graphIdentity fills the fields every Graph-shaped record spells the same way.
func (r record) graphIdentity(env *Envelope) {
	o := r.fields
	env.TenantID = firstGUID(env.TenantID, r.wrapper.str("tenantId"), o.str("tenantId"))
	env.User = firstUPN(o.str("userPrincipalName"))
	env.UserID = firstGUID("", o.str("userId"))
	env.IP = firstIP(o.str("ipAddress"))
}

// timeOf returns the first of the named fields that holds a non-zero time, falling
// back to a diagnostic envelope's time. A field that is present but unreadable is
// an error: the record is malformed, and guessing would misplace checkpoints.
func (r record) timeOf(names ...string) (time.Time, error) {
	for _, name := range names {
		v := r.fields.str(name)
		if v == "" {
			continue
		}
		t, err := parseTime(v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w %s %q: %w", ErrBadField, name, v, err)
		}
		if !t.IsZero() {
			return t, nil
		}
	}
	if r.wrap == wrapDiagnostic {
		if v := r.wrapper.str("time"); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return time.Time{}, fmt.Errorf("%w envelope time %q: %w", ErrBadField, v, err)
			}
			if !t.IsZero() {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%w %s", ErrMissingField, strings.Join(names, "/"))
}

// parseTime reads the timestamp spellings Microsoft emits; the result is UTC.
func parseTime(s string) (time.Time, error) {
	layouts := [...]string{
		time.RFC3339Nano,                      // Graph, Z or offset, any fraction; also unpadded hour
		"2006-01-02T15:04:05.999999999",       // Management Activity CreationTime: no zone = UTC
		"2006-01-02 15:04:05.999999999Z07:00", // space instead of T
		"2006-01-02 15:04:05.999999999",
		"1/2/2006 3:04:05 PM", // Azure diagnostic export envelope
		"1/2/2006 15:04:05",
	}
	s = strings.TrimSpace(s)
	var first error
	for _, layout := range layouts {
		t, err := time.Parse(layout, s)
		if err == nil {
			// An offset can push a year-0000/9999 value out of the range the
			// envelope's JSON encoding accepts; such a time is malformed anyway.
			if t = t.UTC(); t.Year() < 1 || t.Year() > 9999 {
				return time.Time{}, fmt.Errorf("time %q: year %d out of range", s, t.Year())
			}
			return t, nil
		}
		if first == nil {
			first = err
		}
	}
	return time.Time{}, first
}

func orUnknown(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return KindUnknown
	}
	return s
}

// firstGUID returns the first candidate that is a GUID, else def.
func firstGUID(def string, candidates ...string) string {
	for _, c := range candidates {
		if isGUID(c) {
			return c
		}
	}
	return def
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func firstUPN(candidates ...string) string {
	for _, c := range candidates {
		if c = strings.TrimSpace(c); isUPNLike(c) {
			return c
		}
	}
	return ""
}

// isUPNLike accepts local@domain.tld where the local part has no whitespace, control
// characters or any of :\/()<>[],;"@ and the domain is dot-separated labels of
// letters, digits and hyphens. External users' UPNs (a_b.com#EXT#@t.onmicrosoft.com)
// pass; "NT AUTHORITY\SYSTEM (…)", "urn:spo:guest#a@b.com" and bare names do not.
func isUPNLike(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at != strings.LastIndexByte(s, '@') || len(s) > 320 {
		return false
	}
	for _, r := range s[:at] {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`:\/()<>[],;"`, r) {
			return false
		}
	}
	labels := strings.Split(s[at+1:], ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func firstIP(candidates ...string) string {
	for _, c := range candidates {
		if ip := bareIP(c); ip != "" {
			return ip
		}
	}
	return ""
}

// bareIP extracts the address from the spellings seen in Management Activity and
// Graph records (see NormalizeAs); anything else gives "".
func bareIP(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return cleanIP(a)
	}
	host := ""
	switch {
	case s[0] == '[': // [addr] or [addr]:port, addr v4 or v6
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return ""
		}
		if rest := s[end+1:]; rest != "" && !isPort(rest) {
			return ""
		}
		host = s[1:end]
	case strings.Count(s, ":") == 1: // v4:port (v6 with a port always has brackets)
		i := strings.IndexByte(s, ':')
		if !isPort(s[i:]) {
			return ""
		}
		host = s[:i]
	default:
		return ""
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return cleanIP(a)
}

// isPort reports whether s is ":" followed by 1–5 digits.
func isPort(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func cleanIP(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return ""
	}
	return a.String()
}

// object is one decoded JSON object, its values left raw so that any field may have
// any type without failing the whole record.
type object map[string]json.RawMessage

func decodeObject(raw []byte) (object, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	if o == nil { // the JSON was null
		return nil, errors.New("not a JSON object: null")
	}
	return o, nil
}

// has reports whether the key is present, whatever its value (null included).
func (o object) has(key string) bool {
	_, ok := o[key]
	return ok
}

// str returns a string value, or the literal of a number or boolean (numbers are
// sometimes strings and strings sometimes numbers); "" for null, absent, objects and
// arrays.
func (o object) str(key string) string {
	v := bytes.TrimSpace(o[key])
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return ""
		}
		return s
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f':
		return string(v)
	}
	return ""
}

// object returns a nested object; ok is false if absent, null or not an object.
func (o object) object(key string) (object, bool) {
	v := bytes.TrimSpace(o[key])
	if len(v) == 0 || v[0] != '{' {
		return nil, false
	}
	var n object
	if json.Unmarshal(v, &n) != nil {
		return nil, false
	}
	return n, true
}

// number reads a JSON number or a numeric string.
func (o object) number(key string) (float64, bool) {
	s := strings.TrimSpace(o.str(key))
	if s == "" || s == "true" || s == "false" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

// required returns a non-empty string field or an error naming it.
func (o object) required(key string) (string, error) {
	v := o[key]
	s := strings.TrimSpace(o.str(key))
	if s != "" {
		return s, nil
	}
	if t := bytes.TrimSpace(v); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return "", fmt.Errorf("%w %s: not a string", ErrBadField, key)
	}
	return "", fmt.Errorf("%w %s", ErrMissingField, key)
}
