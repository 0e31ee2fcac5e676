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
	"unicode/utf8"
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
//   - Graph security alert (alerts_v2, checked first): @odata.type
//     #microsoft.graph.security.alert, or serviceSource and
//     lastUpdateDateTime; normalised by alert.go.
//
// An Azure Monitor diagnostic-settings envelope ({time, category, properties}) is
// classified by its category alone (SignInLogs, NonInteractiveUserSignInLogs,
// ServicePrincipalSignInLogs, ManagedIdentitySignInLogs → signin; UserRiskEvents →
// risk_detection; RiskyUsers → risky_user); any other category (AuditLogs,
// MicrosoftGraphActivityLogs…) is ErrUnknownSource. Field names are matched exactly
// (Microsoft's casing). Presence is enough for detection, even with a null value;
// Normalize then reports missing values.
func DetectSource(raw json.RawMessage) (Source, error) {
	var r record
	if err := r.parse(raw); err != nil {
		return "", err
	}
	if r.wrap == wrapNone && isAlertShape(raw) {
		return SourceAlert, nil
	}
	return r.detect()
}

// Normalize detects the source of raw and builds its envelope (see NormalizeAs).
func Normalize(tenantID string, raw json.RawMessage) (Envelope, error) {
	var r record
	if err := r.parse(raw); err != nil {
		return Envelope{}, err
	}
	if r.wrap == wrapNone && isAlertShape(raw) {
		return normalizeAlert(tenantID, raw)
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
	if src == SourceAlert {
		return normalizeAlert(tenantID, raw)
	}
	var r record
	if err := r.parse(raw); err != nil {
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

// record is a scanned record and the wrapper it arrived in, if any.
type record struct {
	sc   scanner
	wrap int
}

// parse scans raw once (see scan.go) and recognises a wrapper.
func (r *record) parse(raw []byte) error {
	if !r.sc.scan(raw) {
		return decodeError(raw)
	}
	switch {
	case r.sc.hasProps && len(text(raw, r.sc.top.v[fcategory])) > 0:
		r.wrap = wrapDiagnostic
	case r.sc.hasAudit && isAuditShape(&r.sc.audit):
		r.wrap = wrapAuditQuery
	}
	return nil
}

// decodeError explains why raw is not one JSON object, in encoding/json's words
// (a *json.SyntaxError for invalid JSON). It runs only for rejected records.
func decodeError(raw []byte) error {
	var o map[string]json.RawMessage
	err := json.Unmarshal(raw, &o)
	switch {
	case err != nil:
	case o == nil: // the JSON was null
		err = errors.New("not a JSON object: null")
	default: // unreachable unless the scanner and encoding/json disagree
		err = errors.New("not a single JSON object")
	}
	return fmt.Errorf("event: decode record: %w", err)
}

// fields returns the Microsoft record itself.
func (r *record) fields() *fieldSet {
	switch r.wrap {
	case wrapDiagnostic:
		return &r.sc.props
	case wrapAuditQuery:
		return &r.sc.audit
	}
	return &r.sc.top
}

// text returns a member of the record as the reference's str did (see text).
func (r *record) text(slot int) []byte {
	return text(r.sc.data, r.fields().v[slot])
}

// wrapperText returns a member of the wrapper; nil for a bare record.
func (r *record) wrapperText(slot int) []byte {
	if r.wrap == wrapNone {
		return nil
	}
	return text(r.sc.data, r.sc.top.v[slot])
}

func (r *record) detect() (Source, error) {
	if r.wrap == wrapDiagnostic {
		cat := text(r.sc.data, r.sc.top.v[fcategory])
		if src, ok := diagnosticSource(cat); ok {
			return src, nil
		}
		return "", fmt.Errorf("event: diagnostic category %q: %w", cat, ErrUnknownSource)
	}
	o := r.fields()
	switch {
	case isAuditShape(o):
		return SourceAudit, nil
	case o.has(friskEventType) && (o.has(flastUpdatedDateTime) || o.has(fdetectedDateTime) || o.has(factivityDateTime)):
		return SourceRiskDetection, nil
	case o.has(friskLastUpdatedDateTime),
		o.has(friskLevel) && o.has(fuserPrincipalName) && !o.has(friskEventType) && !o.has(fcreatedDateTime):
		return SourceRiskyUser, nil
	case o.has(fcreatedDateTime) && (o.has(fstatus) || o.has(fappId) || o.has(fappDisplayName) ||
		o.has(fipAddress) || o.has(fclientAppUsed) || o.has(fconditionalAccessStatus)):
		return SourceSignIn, nil
	}
	if v := o.v[fvalue]; v.end != 0 && r.sc.data[v.start] == '[' {
		return "", fmt.Errorf("event: a collection response (\"value\" array), not one record: %w", ErrUnknownSource)
	}
	return "", fmt.Errorf("event: %w", ErrUnknownSource)
}

// has reports whether the member is present, whatever its value (null included).
func (o *fieldSet) has(slot int) bool { return o.v[slot].end != 0 }

func isAuditShape(o *fieldSet) bool {
	return o.has(fCreationTime) && (o.has(fOperation) || o.has(fRecordType) || o.has(fWorkload))
}

// diagnosticSource maps a diagnostic category, compared as strings.ToLower would.
func diagnosticSource(category []byte) (Source, bool) {
	for _, c := range category {
		if c >= utf8.RuneSelf {
			return diagnosticSourceLower(strings.ToLower(string(category)))
		}
	}
	for _, c := range [...]struct {
		lower string
		src   Source
	}{
		{"signinlogs", SourceSignIn}, {"noninteractiveusersigninlogs", SourceSignIn},
		{"serviceprincipalsigninlogs", SourceSignIn}, {"managedidentitysigninlogs", SourceSignIn},
		{"userriskevents", SourceRiskDetection}, {"riskyusers", SourceRiskyUser},
	} {
		if asciiLowerEqual(category, c.lower) {
			return c.src, true
		}
	}
	return "", false
}

func diagnosticSourceLower(category string) (Source, bool) {
	switch category {
	case "signinlogs", "noninteractiveusersigninlogs", "serviceprincipalsigninlogs", "managedidentitysigninlogs":
		return SourceSignIn, true
	case "userriskevents":
		return SourceRiskDetection, true
	case "riskyusers":
		return SourceRiskyUser, true
	}
	return "", false
}

// asciiLowerEqual reports whether the ASCII b, lower-cased, is lower.
func asciiLowerEqual(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// extracted holds what the normalisers read, as views into the record (or into
// an unescaped copy), until envelope copies them into one string.
type extracted struct {
	id        []byte
	idTime    bool   // the ID is id + ":" + Time in RFC 3339
	kind      []byte // nil: kindConst
	kindConst string
	time      time.Time
	tenant    []byte // nil: the tenantID argument
	user      []byte
	userID    []byte
	ip        netip.Addr
	mailbox   string
	ruleID    string
}

func (r *record) normalize(src Source, tenantID string, raw json.RawMessage) (Envelope, error) {
	var f extracted
	var err error
	switch src {
	case SourceAudit:
		err = r.audit(&f)
	case SourceSignIn:
		err = r.signIn(&f)
	case SourceRiskDetection:
		err = r.riskDetection(&f)
	case SourceRiskyUser:
		err = r.riskyUser(&f)
	}
	if err != nil {
		return Envelope{}, fmt.Errorf("event: %s record: %w", src, err)
	}
	return f.envelope(src, tenantID, raw), nil
}

// envelope builds the envelope with two allocations: Raw, and one string that
// the ID, Kind, TenantID, User, UserID and IP taken from the record share.
func (f *extracted) envelope(src Source, tenantID string, raw []byte) Envelope {
	var stack [256]byte
	b := append(stack[:0], f.id...)
	if f.idTime {
		b = append(b, ':')
		b = f.time.AppendFormat(b, time.RFC3339Nano)
	}
	idEnd := len(b)
	b = append(b, f.kind...)
	kindEnd := len(b)
	b = append(b, f.tenant...)
	tenantEnd := len(b)
	b = append(b, f.user...)
	userEnd := len(b)
	b = append(b, f.userID...)
	userIDEnd := len(b)
	if f.ip.IsValid() {
		b = f.ip.AppendTo(b)
	}
	s := string(b)
	env := Envelope{
		ID:       s[:idEnd],
		Source:   src,
		Kind:     f.kindConst,
		Time:     f.time,
		TenantID: tenantID,
		User:     s[tenantEnd:userEnd],
		UserID:   s[userEnd:userIDEnd],
		IP:       s[userIDEnd:],
		Mailbox:  f.mailbox,
		RuleID:   f.ruleID,
		Raw:      bytes.Clone(raw),
	}
	if f.kind != nil {
		env.Kind = s[idEnd:kindEnd]
	}
	if f.tenant != nil {
		env.TenantID = s[kindEnd:tenantEnd]
	}
	return env
}

func (r *record) audit(f *extracted) error {
	id, err := r.required(fId)
	if err != nil {
		return err
	}
	t, err := r.timeOf(fCreationTime)
	if err != nil {
		return err
	}
	f.id, f.time = id, t
	f.kind, f.kindConst = orUnknown(r.text(fOperation))
	f.tenant = firstGUID(r.text(fOrganizationId), r.wrapperText(forganizationId))
	f.user = firstUPN(r.text(fUserId), r.text(fMailboxOwnerUPN), r.wrapperText(fuserPrincipalName))
	f.userID = firstGUID(r.text(fUserKey), r.wrapperText(fuserId))
	f.ip = firstIP(r.text(fClientIP), r.text(fClientIPAddress), r.text(fActorIpAddress))
	if exchangeOperation(r.text(fOperation), r.fields().has(fMailboxOwnerUPN)) {
		f.mailbox, f.ruleID = r.exchangeTargets()
	}
	return nil
}

func (r *record) signIn(f *extracted) error {
	id, err := r.required(fid)
	if err != nil {
		return err
	}
	t, err := r.timeOf(fcreatedDateTime)
	if err != nil {
		return err
	}
	f.id, f.time = id, t
	f.kindConst = KindUnknown
	if o := r.fields(); o.has(fstatus) && r.sc.data[o.v[fstatus].start] == '{' {
		if zero, ok := isZeroNumber(text(r.sc.data, o.errorCode)); ok {
			f.kindConst = KindSignInFailure
			if zero {
				f.kindConst = KindSignInSuccess
			}
		}
	}
	r.graphIdentity(f)
	return nil
}

func (r *record) riskDetection(f *extracted) error {
	id, err := r.required(fid)
	if err != nil {
		return err
	}
	t, err := r.timeOf(flastUpdatedDateTime, fdetectedDateTime, factivityDateTime)
	if err != nil {
		return err
	}
	f.id, f.idTime, f.time = id, true, t
	f.kind, f.kindConst = orUnknown(r.text(friskEventType))
	r.graphIdentity(f)
	return nil
}

func (r *record) riskyUser(f *extracted) error {
	id, err := r.required(fid)
	if err != nil {
		return err
	}
	t, err := r.timeOf(friskLastUpdatedDateTime)
	if err != nil {
		return err
	}
	f.id, f.idTime, f.time = id, true, t
	f.kind, f.kindConst = orUnknown(r.text(friskLevel))
	r.graphIdentity(f)
	if f.userID == nil {
		f.userID = firstGUID(id) // a riskyUser's id is the user's object id
	}
	return nil
}

// graphIdentity fills the fields every Graph-shaped record spells the same way.
func (r *record) graphIdentity(f *extracted) {
	f.tenant = firstGUID(r.wrapperText(ftenantId), r.text(ftenantId))
	f.user = firstUPN(r.text(fuserPrincipalName))
	f.userID = firstGUID(r.text(fuserId))
	f.ip = firstIP(r.text(fipAddress))
}

// required returns a non-empty string member, trimmed, or an error naming it.
func (r *record) required(slot int) ([]byte, error) {
	if s := bytes.TrimSpace(r.text(slot)); len(s) > 0 {
		return s, nil
	}
	if v := r.fields().v[slot]; v.end != 0 && (r.sc.data[v.start] == '{' || r.sc.data[v.start] == '[') {
		return nil, fmt.Errorf("%w %s: not a string", ErrBadField, slotNames[slot])
	}
	return nil, fmt.Errorf("%w %s", ErrMissingField, slotNames[slot])
}

// timeOf returns the first of the named fields that holds a non-zero time, falling
// back to a diagnostic envelope's time. A field that is present but unreadable is
// an error: the record is malformed, and guessing would misplace checkpoints.
func (r *record) timeOf(slots ...int) (time.Time, error) {
	for _, slot := range slots {
		v := r.text(slot)
		if len(v) == 0 {
			continue
		}
		t, err := parseTimeBytes(v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w %s %q: %w", ErrBadField, slotNames[slot], v, err)
		}
		if !t.IsZero() {
			return t, nil
		}
	}
	if r.wrap == wrapDiagnostic {
		if v := r.wrapperText(ftime); len(v) > 0 {
			t, err := parseTimeBytes(v)
			if err != nil {
				return time.Time{}, fmt.Errorf("%w envelope time %q: %w", ErrBadField, v, err)
			}
			if !t.IsZero() {
				return t, nil
			}
		}
	}
	names := make([]string, len(slots))
	for i, slot := range slots {
		names[i] = slotNames[slot]
	}
	return time.Time{}, fmt.Errorf("%w %s", ErrMissingField, strings.Join(names, "/"))
}

// parseTimeBytes is parseTime with a fast path for the usual RFC 3339 spellings.
func parseTimeBytes(b []byte) (time.Time, error) {
	if t, ok := parseRFC3339(b); ok {
		return t, nil
	}
	return parseTime(string(b))
}

// parseRFC3339 reads YYYY-MM-DDTHH:MM:SS[.fraction][Z|±hh:mm] with every field in
// range, as parseTime would; anything else (and any doubt) is left to parseTime.
func parseRFC3339(b []byte) (time.Time, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, month, day := digits(b[0:4]), digits(b[5:7]), digits(b[8:10])
	hour, minute, sec := digits(b[11:13]), digits(b[14:16]), digits(b[17:19])
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if i < len(b) && b[i] == '.' {
		j := i + 1
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		n := j - (i + 1)
		if n < 1 || n > 9 {
			return time.Time{}, false
		}
		nsec = digits(b[i+1 : j])
		for ; n < 9; n++ {
			nsec *= 10
		}
		i = j
	}
	offset := 0
	switch rest := b[i:]; {
	case len(rest) == 0, len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		hh, mm := digits(rest[1:3]), digits(rest[4:6])
		if hh < 0 || hh > 23 || mm < 0 || mm > 59 {
			return time.Time{}, false
		}
		if offset = hh*3600 + mm*60; rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, false // parseTime reports it
	}
	return t, true
}

// digits returns the value of a run of ASCII digits, or -1.
func digits(b []byte) int {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
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

// orUnknown returns the trimmed kind, or KindUnknown as def when it is empty.
func orUnknown(b []byte) (kind []byte, def string) {
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, KindUnknown
	}
	return b, ""
}

// isZeroNumber reads a JSON number or a numeric string (as strconv.ParseFloat)
// and reports whether it is 0; ok is false when it is not a number.
func isZeroNumber(b []byte) (zero, ok bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return false, false
	}
	if d := b; len(d) <= 15 { // fast path: -?digits, exact in a float64
		if d[0] == '-' {
			d = d[1:]
		}
		if len(d) > 0 && digits(d) >= 0 {
			return digits(d) == 0, true
		}
	}
	s := string(b)
	if s == "true" || s == "false" {
		return false, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false, false
	}
	return f == 0, true
}

// firstGUID returns the first candidate that is a GUID, else nil.
func firstGUID(candidates ...[]byte) []byte {
	for _, c := range candidates {
		if isGUID(c) {
			return c
		}
	}
	return nil
}

// IsGUID reports whether s is a GUID in its 8-4-4-4-12 hexadecimal form (an
// Entra object id); internal/actions checks a target user id with it too.
func IsGUID[T string | []byte](s T) bool { return isGUID(s) }

func isGUID[T string | []byte](s T) bool {
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

// firstUPN returns the first candidate, trimmed, that looks like a UPN, else nil.
func firstUPN(candidates ...[]byte) []byte {
	for _, c := range candidates {
		if c = bytes.TrimSpace(c); isUPNLike(c) {
			return c
		}
	}
	return nil
}

// isUPNLike accepts local@domain.tld where the local part has no whitespace, control
// characters or any of :\/()<>[],;"@ and the domain is dot-separated labels of
// letters, digits and hyphens. External users' UPNs (a_b.com#EXT#@t.onmicrosoft.com)
// pass; "NT AUTHORITY\SYSTEM (…)", "urn:spo:guest#a@b.com" and bare names do not.
// Every character it rejects is ASCII, so it works on bytes: the bytes of a
// multi-byte (or invalid) UTF-8 sequence are all >= 0x80 and pass, as the rune does.
func isUPNLike[T string | []byte](s T) bool {
	at := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			if at >= 0 {
				return false
			}
			at = i
		}
	}
	if at <= 0 || len(s) > 320 {
		return false
	}
	for i := 0; i < at; i++ {
		switch c := s[i]; {
		case c <= ' ', c == 0x7f:
			return false
		case c < utf8.RuneSelf && strings.IndexByte(`:\/()<>[],;"`, c) >= 0:
			return false
		}
	}
	labels, start := 0, at+1
	for i := start; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			continue
		}
		if i == start || s[start] == '-' || s[i-1] == '-' {
			return false
		}
		for j := start; j < i; j++ {
			c := s[j]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
		labels++
		start = i + 1
	}
	return labels >= 2
}

// firstIP returns the address of the first candidate that holds one.
func firstIP(candidates ...[]byte) netip.Addr {
	for _, c := range candidates {
		if a := bareAddrBytes(c); a.IsValid() {
			return a
		}
	}
	return netip.Addr{}
}

// bareAddrBytes is bareAddr with a fast path for "a.b.c.d" and "a.b.c.d:port".
func bareAddrBytes(b []byte) netip.Addr {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return netip.Addr{}
	}
	if a, ok := parseIPv4Port(b); ok {
		return cleanAddr(a)
	}
	hex := false
	for _, c := range b {
		if isHex(c) {
			hex = true
			break
		}
	}
	if !hex { // "<null>", "-": every address that is not unspecified has a hex digit
		return netip.Addr{}
	}
	return bareAddr(string(b))
}

// parseIPv4Port reads a dotted-quad IPv4 address as netip.ParseAddr does (no
// leading zeros), optionally followed by a port as bareAddr accepts it.
func parseIPv4Port(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	i := 0
	for k := range ip {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && isDigit(b[i]) && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if n := i - start; n == 0 || v > 255 || n > 1 && b[start] == '0' {
			return netip.Addr{}, false
		}
		ip[k] = byte(v)
	}
	if i < len(b) && !isPort(b[i:]) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// bareIP extracts the address from the spellings seen in Management Activity and
// Graph records (see NormalizeAs); anything else gives "".
func bareIP(s string) string {
	if a := bareAddr(s); a.IsValid() {
		return a.String()
	}
	return ""
}

// bareAddr is bareIP's address; the zero Addr for none.
func bareAddr(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return cleanAddr(a)
	}
	host := ""
	switch {
	case s[0] == '[': // [addr] or [addr]:port, addr v4 or v6
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}
		}
		if rest := s[end+1:]; rest != "" && !isPort(rest) {
			return netip.Addr{}
		}
		host = s[1:end]
	case strings.Count(s, ":") == 1: // v4:port (v6 with a port always has brackets)
		i := strings.IndexByte(s, ':')
		if !isPort(s[i:]) {
			return netip.Addr{}
		}
		host = s[:i]
	default:
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return cleanAddr(a)
}

// isPort reports whether s is ":" followed by 1–5 digits.
func isPort[T string | []byte](s T) bool {
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

// cleanAddr drops the zone and unmaps; the unspecified address gives the zero Addr.
func cleanAddr(a netip.Addr) netip.Addr {
	a = a.WithZone("").Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
