package event

// normalize_ref_test.go keeps the first implementation of the normalisers (decode
// the record into map[string]json.RawMessage, then each field again) as the
// reference that the single-pass scanner in normalize.go and scan.go is compared
// with (normalize_diff_test.go). It is not compiled into the package.

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

// detectSourceReference is the first DetectSource.
func detectSourceReference(raw json.RawMessage) (Source, error) {
	r, err := refParseRecord(raw)
	if err != nil {
		return "", err
	}
	if r.wrap == refWrapNone && isAlertShape(raw) {
		return SourceAlert, nil
	}
	return r.detect()
}

// normalizeReference is the first Normalize.
func normalizeReference(tenantID string, raw json.RawMessage) (Envelope, error) {
	r, err := refParseRecord(raw)
	if err != nil {
		return Envelope{}, err
	}
	// Graph security alerts (alerts_v2) are recognised first and decoded by
	// alert.go, whose encoding/json decoding is its own reference.
	if r.wrap == refWrapNone && isAlertShape(raw) {
		return normalizeAlert(tenantID, raw)
	}
	src, err := r.detect()
	if err != nil {
		return Envelope{}, err
	}
	return r.normalize(src, tenantID, raw)
}

// normalizeAsReference is the first NormalizeAs.
func normalizeAsReference(src Source, tenantID string, raw json.RawMessage) (Envelope, error) {
	if !src.Valid() {
		return Envelope{}, fmt.Errorf("event: source %q: %w", src, ErrUnknownSource)
	}
	r, err := refParseRecord(raw)
	if err != nil {
		return Envelope{}, err
	}
	return r.normalize(src, tenantID, raw)
}

// wrapper kinds
const (
	refWrapNone = iota
	refWrapDiagnostic
	refWrapAuditQuery
)

// record is a decoded record and the wrapper it arrived in, if any.
type refRecord struct {
	fields  refObject // the Microsoft record itself
	wrapper refObject // the diagnostic envelope or Graph audit query record; nil if bare
	wrap    int
}

func refParseRecord(raw json.RawMessage) (refRecord, error) {
	top, err := refDecodeObject(raw)
	if err != nil {
		return refRecord{}, fmt.Errorf("event: decode record: %w", err)
	}
	if props, ok := top.refObject("properties"); ok && top.str("category") != "" {
		return refRecord{fields: props, wrapper: top, wrap: refWrapDiagnostic}, nil
	}
	if ad, ok := top.refObject("auditData"); ok && refIsAuditShape(ad) {
		return refRecord{fields: ad, wrapper: top, wrap: refWrapAuditQuery}, nil
	}
	return refRecord{fields: top}, nil
}

func (r refRecord) detect() (Source, error) {
	if r.wrap == refWrapDiagnostic {
		cat := r.wrapper.str("category")
		if src, ok := refDiagnosticSource(cat); ok {
			return src, nil
		}
		return "", fmt.Errorf("event: diagnostic category %q: %w", cat, ErrUnknownSource)
	}
	o := r.fields
	switch {
	case refIsAuditShape(o):
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

func refIsAuditShape(o refObject) bool {
	return o.has("CreationTime") && (o.has("Operation") || o.has("RecordType") || o.has("Workload"))
}

func refDiagnosticSource(category string) (Source, bool) {
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

func (r refRecord) normalize(src Source, tenantID string, raw json.RawMessage) (Envelope, error) {
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

func (r refRecord) audit(env *Envelope) error {
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
	env.Kind = refOrUnknown(o.str("Operation"))
	env.TenantID = refFirstGUID(env.TenantID, o.str("OrganizationId"), r.wrapper.str("organizationId"))
	env.User = refFirstUPN(o.str("UserId"), o.str("MailboxOwnerUPN"), r.wrapper.str("userPrincipalName"))
	env.UserID = refFirstGUID("", o.str("UserKey"), r.wrapper.str("userId"))
	env.IP = refFirstIP(o.str("ClientIP"), o.str("ClientIPAddress"), o.str("ActorIpAddress"))
	env.Mailbox, env.RuleID = exchangeTargets(o)
	return nil
}

func (r refRecord) signIn(env *Envelope) error {
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
	if status, ok := o.refObject("status"); ok {
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

func (r refRecord) riskDetection(env *Envelope) error {
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
	env.Kind = refOrUnknown(o.str("riskEventType"))
	r.graphIdentity(env)
	return nil
}

func (r refRecord) riskyUser(env *Envelope) error {
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
	env.Kind = refOrUnknown(o.str("riskLevel"))
	r.graphIdentity(env)
	if env.UserID == "" {
		env.UserID = refFirstGUID("", id) // a riskyUser's id is the user's object id
	}
	return nil
}

// graphIdentity fills the fields every Graph-shaped record spells the same way.
func (r refRecord) graphIdentity(env *Envelope) {
	o := r.fields
	env.TenantID = refFirstGUID(env.TenantID, r.wrapper.str("tenantId"), o.str("tenantId"))
	env.User = refFirstUPN(o.str("userPrincipalName"))
	env.UserID = refFirstGUID("", o.str("userId"))
	env.IP = refFirstIP(o.str("ipAddress"))
}

// timeOf returns the first of the named fields that holds a non-zero time, falling
// back to a diagnostic envelope's time. A field that is present but unreadable is
// an error: the record is malformed, and guessing would misplace checkpoints.
func (r refRecord) timeOf(names ...string) (time.Time, error) {
	for _, name := range names {
		v := r.fields.str(name)
		if v == "" {
			continue
		}
		t, err := refParseTime(v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w %s %q: %w", ErrBadField, name, v, err)
		}
		if !t.IsZero() {
			return t, nil
		}
	}
	if r.wrap == refWrapDiagnostic {
		if v := r.wrapper.str("time"); v != "" {
			t, err := refParseTime(v)
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
func refParseTime(s string) (time.Time, error) {
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

func refOrUnknown(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return KindUnknown
	}
	return s
}

// firstGUID returns the first candidate that is a GUID, else def.
func refFirstGUID(def string, candidates ...string) string {
	for _, c := range candidates {
		if refIsGUID(c) {
			return c
		}
	}
	return def
}

func refIsGUID(s string) bool {
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
			if !refIsHex(c) {
				return false
			}
		}
	}
	return true
}

func refIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func refFirstUPN(candidates ...string) string {
	for _, c := range candidates {
		if c = strings.TrimSpace(c); refIsUPNLike(c) {
			return c
		}
	}
	return ""
}

// isUPNLike accepts local@domain.tld where the local part has no whitespace, control
// characters or any of :\/()<>[],;"@ and the domain is dot-separated labels of
// letters, digits and hyphens. External users' UPNs (a_b.com#EXT#@t.onmicrosoft.com)
// pass; "NT AUTHORITY\SYSTEM (…)", "urn:spo:guest#a@b.com" and bare names do not.
func refIsUPNLike(s string) bool {
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

func refFirstIP(candidates ...string) string {
	for _, c := range candidates {
		if ip := refBareIP(c); ip != "" {
			return ip
		}
	}
	return ""
}

// bareIP extracts the address from the spellings seen in Management Activity and
// Graph records (see NormalizeAs); anything else gives "".
func refBareIP(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return refCleanIP(a)
	}
	host := ""
	switch {
	case s[0] == '[': // [addr] or [addr]:port, addr v4 or v6
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return ""
		}
		if rest := s[end+1:]; rest != "" && !refIsPort(rest) {
			return ""
		}
		host = s[1:end]
	case strings.Count(s, ":") == 1: // v4:port (v6 with a port always has brackets)
		i := strings.IndexByte(s, ':')
		if !refIsPort(s[i:]) {
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
	return refCleanIP(a)
}

// isPort reports whether s is ":" followed by 1–5 digits.
func refIsPort(s string) bool {
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

func refCleanIP(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return ""
	}
	return a.String()
}

// object is one decoded JSON object, its values left raw so that any field may have
// any type without failing the whole record.
type refObject map[string]json.RawMessage

func refDecodeObject(raw []byte) (refObject, error) {
	var o refObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	if o == nil { // the JSON was null
		return nil, errors.New("not a JSON object: null")
	}
	return o, nil
}

// has reports whether the key is present, whatever its value (null included).
func (o refObject) has(key string) bool {
	_, ok := o[key]
	return ok
}

// str returns a string value, or the literal of a number or boolean (numbers are
// sometimes strings and strings sometimes numbers); "" for null, absent, objects and
// arrays.
func (o refObject) str(key string) string {
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
func (o refObject) refObject(key string) (refObject, bool) {
	v := bytes.TrimSpace(o[key])
	if len(v) == 0 || v[0] != '{' {
		return nil, false
	}
	var n refObject
	if json.Unmarshal(v, &n) != nil {
		return nil, false
	}
	return n, true
}

// number reads a JSON number or a numeric string.
func (o refObject) number(key string) (float64, bool) {
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
func (o refObject) required(key string) (string, error) {
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
