package event

import (
	"encoding/binary"
	"encoding/json"
	"unicode/utf8"
)

// This file holds the single-pass reader behind Normalize: it validates a whole
// record as JSON (the grammar and the nesting limit of encoding/json) while walking
// its top-level object once, and records where the values of the few members the
// normalisers read begin and end. Nothing is decoded or allocated for the other
// members; a string is unescaped only when it holds an escape or invalid UTF-8,
// and then by encoding/json itself so that the result is the same.

// Member slots: the names Normalize reads, in the record or in a wrapper. Names
// are matched exactly, after unescaping, as encoding/json matches map keys.
const (
	fId = iota // audit record
	fCreationTime
	fOperation
	fRecordType
	fWorkload
	fOrganizationId
	fUserId
	fMailboxOwnerUPN
	fUserKey
	fClientIP
	fClientIPAddress
	fActorIpAddress
	fParameters          // Exchange records (exchange.go)
	fObjectId            //
	fOperationProperties //
	fid                  // Graph records
	fcreatedDateTime
	fstatus
	fappId
	fappDisplayName
	fipAddress
	fclientAppUsed
	fconditionalAccessStatus
	friskEventType
	flastUpdatedDateTime
	fdetectedDateTime
	factivityDateTime
	friskLastUpdatedDateTime
	friskLevel
	fuserPrincipalName
	fuserId
	ftenantId
	fvalue
	ftime // wrappers
	fcategory
	fproperties
	fauditData
	forganizationId
	numSlots

	noSlot = -1
)

// slotNames gives each slot's member name, for error messages.
var slotNames = [numSlots]string{
	fId: "Id", fCreationTime: "CreationTime", fOperation: "Operation", fRecordType: "RecordType",
	fWorkload: "Workload", fOrganizationId: "OrganizationId", fUserId: "UserId",
	fMailboxOwnerUPN: "MailboxOwnerUPN", fUserKey: "UserKey", fClientIP: "ClientIP",
	fClientIPAddress: "ClientIPAddress", fActorIpAddress: "ActorIpAddress",
	fParameters: "Parameters", fObjectId: "ObjectId", fOperationProperties: "OperationProperties", fid: "id",
	fcreatedDateTime: "createdDateTime", fstatus: "status", fappId: "appId",
	fappDisplayName: "appDisplayName", fipAddress: "ipAddress", fclientAppUsed: "clientAppUsed",
	fconditionalAccessStatus: "conditionalAccessStatus", friskEventType: "riskEventType",
	flastUpdatedDateTime: "lastUpdatedDateTime", fdetectedDateTime: "detectedDateTime",
	factivityDateTime: "activityDateTime", friskLastUpdatedDateTime: "riskLastUpdatedDateTime",
	friskLevel: "riskLevel", fuserPrincipalName: "userPrincipalName", fuserId: "userId",
	ftenantId: "tenantId", fvalue: "value", ftime: "time", fcategory: "category",
	fproperties: "properties", fauditData: "auditData", forganizationId: "organizationId",
}

// slotOf returns the slot of a member name, or noSlot. The switch on string(k)
// does not allocate.
func slotOf(k []byte) int {
	switch string(k) {
	case "Id":
		return fId
	case "CreationTime":
		return fCreationTime
	case "Operation":
		return fOperation
	case "RecordType":
		return fRecordType
	case "Workload":
		return fWorkload
	case "OrganizationId":
		return fOrganizationId
	case "UserId":
		return fUserId
	case "MailboxOwnerUPN":
		return fMailboxOwnerUPN
	case "UserKey":
		return fUserKey
	case "ClientIP":
		return fClientIP
	case "ClientIPAddress":
		return fClientIPAddress
	case "ActorIpAddress":
		return fActorIpAddress
	case "Parameters":
		return fParameters
	case "ObjectId":
		return fObjectId
	case "OperationProperties":
		return fOperationProperties
	case "id":
		return fid
	case "createdDateTime":
		return fcreatedDateTime
	case "status":
		return fstatus
	case "appId":
		return fappId
	case "appDisplayName":
		return fappDisplayName
	case "ipAddress":
		return fipAddress
	case "clientAppUsed":
		return fclientAppUsed
	case "conditionalAccessStatus":
		return fconditionalAccessStatus
	case "riskEventType":
		return friskEventType
	case "lastUpdatedDateTime":
		return flastUpdatedDateTime
	case "detectedDateTime":
		return fdetectedDateTime
	case "activityDateTime":
		return factivityDateTime
	case "riskLastUpdatedDateTime":
		return friskLastUpdatedDateTime
	case "riskLevel":
		return friskLevel
	case "userPrincipalName":
		return fuserPrincipalName
	case "userId":
		return fuserId
	case "tenantId":
		return ftenantId
	case "value":
		return fvalue
	case "time":
		return ftime
	case "category":
		return fcategory
	case "properties":
		return fproperties
	case "auditData":
		return fauditData
	case "organizationId":
		return forganizationId
	}
	return noSlot
}

// span is where a member's value lies in the record: data[start:end], without
// surrounding whitespace. end == 0 means the member is absent (a JSON value is
// never empty, and never starts at 0 inside an object).
type span struct{ start, end int }

// fieldSet holds the last occurrence of each slot in one object (the last
// duplicate wins, as with encoding/json and a map), and the errorCode of its last
// status member when that is an object.
type fieldSet struct {
	v         [numSlots]span
	errorCode span
}

// scan modes: which members of an object are recorded.
const (
	modeTop    = iota // the top-level object: every slot, and the objects in properties, auditData and status
	modeRecord        // a wrapped record: every slot, and the object in status
	modeStatus        // a sign-in's status: errorCode only
)

// maxDepth is encoding/json's nesting limit: deeper input is a syntax error.
const maxDepth = 10000

// scanner walks one record. The top-level object's slots go to top, those of
// the last properties and auditData objects to props and audit.
type scanner struct {
	data               []byte
	pos                int
	top, props, audit  fieldSet
	hasProps, hasAudit bool // the last properties / auditData member was an object
}

// scan reads data, which must be exactly one JSON object with optional
// whitespace around it. ok is false for anything else, valid JSON or not.
func (s *scanner) scan(data []byte) (ok bool) {
	s.data = data
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return false
	}
	if !s.object(1, &s.top, modeTop) {
		return false
	}
	s.ws()
	return s.pos == len(s.data)
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// object reads the object at s.pos ('{' already seen there) at nesting depth,
// recording members into fs per mode; fs is nil to only validate.
func (s *scanner) object(depth int, fs *fieldSet, mode int) bool {
	if depth > maxDepth {
		return false
	}
	s.pos++ // '{'
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return true
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return false
		}
		kStart, kEnd, esc, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return false
		}
		s.pos++
		s.ws()
		if s.pos >= len(s.data) {
			return false
		}
		slot, isErrorCode := noSlot, false
		switch {
		case fs == nil:
		case mode == modeStatus:
			isErrorCode = keyIs(s.data[kStart-1:kEnd+1], esc, "errorCode")
		case esc:
			slot = slotOfEscaped(s.data[kStart-1 : kEnd+1])
		default:
			slot = slotOf(s.data[kStart:kEnd])
		}
		vStart := s.pos
		isObj := s.data[vStart] == '{'
		switch {
		case isErrorCode:
			ok = s.value(depth)
			fs.errorCode = span{vStart, s.pos}
		case slot == fstatus:
			fs.errorCode = span{}
			if isObj {
				ok = s.object(depth+1, fs, modeStatus)
			} else {
				ok = s.value(depth)
			}
		case mode == modeTop && slot == fproperties:
			s.props, s.hasProps = fieldSet{}, isObj
			if isObj {
				ok = s.object(depth+1, &s.props, modeRecord)
			} else {
				ok = s.value(depth)
			}
		case mode == modeTop && slot == fauditData:
			s.audit, s.hasAudit = fieldSet{}, isObj
			if isObj {
				ok = s.object(depth+1, &s.audit, modeRecord)
			} else {
				ok = s.value(depth)
			}
		default:
			ok = s.value(depth)
		}
		if !ok {
			return false
		}
		if slot != noSlot {
			fs.v[slot] = span{vStart, s.pos}
		}
		s.ws()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.ws()
		case '}':
			s.pos++
			return true
		default:
			return false
		}
	}
}

// slotOfEscaped looks up a key written with escapes (quoted holds the quotes).
func slotOfEscaped(quoted []byte) int {
	var k string
	if json.Unmarshal(quoted, &k) != nil {
		return noSlot
	}
	return slotOf([]byte(k))
}

// keyIs reports whether a key (quoted holds its quotes) is name.
func keyIs(quoted []byte, esc bool, name string) bool {
	if !esc {
		return string(quoted[1:len(quoted)-1]) == name
	}
	var k string
	return json.Unmarshal(quoted, &k) == nil && k == name
}

// value skips the value at s.pos, a member of a container at depth.
func (s *scanner) value(depth int) bool {
	if s.pos >= len(s.data) {
		return false
	}
	switch c := s.data[s.pos]; c {
	case '{':
		return s.object(depth+1, nil, modeRecord)
	case '[':
		return s.array(depth + 1)
	case '"':
		_, _, _, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return s.number()
		}
		return false
	}
}

func (s *scanner) array(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.pos++ // '['
	s.ws()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return true
	}
	for {
		if !s.value(depth) {
			return false
		}
		s.ws()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.ws()
		case ']':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	d := s.data
	i := s.pos
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return false
		}
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return false
		}
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	s.pos = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// plainStringByte marks the bytes a JSON string holds as they are: not a quote,
// a backslash or a control character.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// SWAR constants: one in each byte, and each byte's high bit.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specialIn reports whether any of the eight bytes in x is a quote, a backslash
// or a control character (< 0x20). Each test is exact for the word as a whole.
func specialIn(x uint64) bool {
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((x-ones*0x20)&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0
}

// str reads the string at s.pos (the opening quote); its content is
// data[start:end]; esc reports a backslash escape in it.
func (s *scanner) str() (start, end int, esc, ok bool) {
	d := s.data
	i := s.pos + 1
	start = i
	for {
		// eight bytes at a time while none is special, then byte by byte
		for i+8 <= len(d) && !specialIn(binary.LittleEndian.Uint64(d[i:])) {
			i += 8
		}
		for i < len(d) && plainStringByte[d[i]] {
			i++
		}
		if i >= len(d) {
			return 0, 0, false, false
		}
		switch d[i] {
		case '"':
			s.pos = i + 1
			return start, i, esc, true
		case '\\':
			esc = true
			if i+1 >= len(d) {
				return 0, 0, false, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					return 0, 0, false, false
				}
				i += 6
			default:
				return 0, 0, false, false
			}
		default: // a control character
			return 0, 0, false, false
		}
	}
}

// text returns what the reference decoder's str gave for a member: a string's
// content, unescaped; the literal of a number or boolean; nil for null, objects,
// arrays and absent members. It is a view into data unless the string needed
// unescaping.
func text(data []byte, sp span) []byte {
	if sp.end == 0 {
		return nil
	}
	switch c := data[sp.start]; c {
	case '"':
		content := data[sp.start+1 : sp.end-1]
		if !plainText(content) {
			var v string
			if json.Unmarshal(data[sp.start:sp.end], &v) != nil {
				return nil
			}
			return []byte(v)
		}
		return content
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f':
		return data[sp.start:sp.end]
	}
	return nil
}

// plainText reports whether a string's content decodes to itself: no escape and
// valid UTF-8 (encoding/json replaces invalid bytes with U+FFFD).
func plainText(content []byte) bool {
	ascii, b := true, content
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if backslash := x ^ (ones * '\\'); (backslash-ones)&^backslash&highs != 0 {
			return false
		}
		if x&highs != 0 {
			ascii = false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return ascii || utf8.Valid(content)
}
