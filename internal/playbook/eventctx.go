package playbook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder-sec/responder/internal/event"
)

// maxEmbeddedJSON bounds the size of a JSON-in-a-string value that a path or
// helper decodes (RuleActions, additionalInfo).
const maxEmbeddedJSON = 64 << 10

// evalCtx is one event as the conditions see it. It is built per Match call and
// caches what it derives, so it is never shared between goroutines. The raw
// record is decoded lazily: scanned once for its top-level members when a
// condition first reads it, and each member decoded when first read.
type evalCtx struct {
	env    *event.Envelope
	set    *Set
	rawErr error

	// The forwarding helpers' values (forward.go), once per event.
	recip                       []string
	fwd, ext                    []any
	recipDone, fwdDone, extDone bool
	exprEnv                     map[string]any

	scanned bool
	isObj   bool     // the record (inside any wrapper) is a JSON object
	members []member // its top-level members
	outer   []member // the wrapper's members when members are a wrapped record's
	full    any      // the whole record, decoded on demand (expr, raw)
	fullOK  bool

	// The buffers members and outer are in, kept across events: the
	// record's (or wrapper's) members, and a wrapped record's.
	memberBuf, innerBuf []member

	// The compiled matcher's per-event memo (prog.go), reset by beginMatch.
	memo       []fieldMemo
	refMemo    []refMemo
	memberMemo []memberMemo
	matchMemo  []matchMemo
	memoUsed   []int32   // memo entries filled since reset (all, when as long as memo)
	refUsed    []int32   // the same for refMemo
	keyNodes   []keyNode // member keys by signature, when keysOK
	keyTab     [keyTabSize]int32
	keysOK     bool // keyNodes and keyTab index c.members
	gen        uint32
	prepGen    uint32 // gen of the slots Set.Decode filled (prepare); 0: none
	valBuf     []fval
	valHW      int // the most of valBuf used since reset
	leafHW     int // the same for leafBuf
	virtBuf    []any
	leafBuf    []leaf
	lowBuf     []byte // lower-cased leaves (leaf.lowB)
	// Recent default reasons and user validity, kept across events (match.go).
	reasons reasonCache
	users   userCache
	// the hits of matchUnits, kept for the next event (matchCtx)
	hitBuf []Hit
}

func newEvalCtx(s *Set, env *event.Envelope) *evalCtx {
	return &evalCtx{env: env, set: s}
}

// reset makes c fresh for another event, keeping its buffers.
func (c *evalCtx) reset(s *Set, env *event.Envelope) {
	// Entries past len were cleared by an earlier reset.
	clear(c.memberBuf)
	clear(c.innerBuf)
	// The memo is kept: beginMatch moves to a new generation, which makes
	// every entry stale (whichever set it was filled for). What the last
	// event left in it and in the buffers is cleared here, so that a pooled
	// context holds on to no event (beginMatch only truncates).
	c.clearMemo()
	clear(c.valBuf[:c.valHW])
	clear(c.leafBuf[:c.leafHW])
	clear(c.virtBuf[:cap(c.virtBuf)])
	// Field by field rather than *c = evalCtx{…}: copying the whole context
	// back (the reason and user caches are full of pointers) cost a bulk
	// write barrier per event while the collector runs. TestResetClears
	// checks that every field is either here or kept on purpose.
	c.env, c.set, c.rawErr = env, s, nil
	c.recip, c.fwd, c.ext, c.exprEnv = nil, nil, nil, nil
	c.recipDone, c.fwdDone, c.extDone = false, false, false
	c.scanned, c.isObj, c.fullOK = false, false, false
	c.members, c.outer, c.full = nil, nil, nil
	c.memberBuf, c.innerBuf = c.memberBuf[:0], c.innerBuf[:0]
	c.memoUsed, c.refUsed, c.keyNodes = c.memoUsed[:0], c.refUsed[:0], c.keyNodes[:0]
	c.keysOK, c.prepGen = false, 0 // keyTab is rebuilt before it is read again
	c.valBuf, c.virtBuf, c.leafBuf, c.lowBuf = c.valBuf[:0], c.virtBuf[:0], c.leafBuf[:0], c.lowBuf[:0]
	c.valHW, c.leafHW = 0, 0
	c.hitBuf = c.hitBuf[:0]
}

// clearMemo drops what the memo holds of the events since reset: only the
// entries filled (a program has hundreds; an event fills a few).
func (c *evalCtx) clearMemo() {
	if len(c.memoUsed) >= len(c.memo) {
		clear(c.memo)
	} else {
		for _, id := range c.memoUsed {
			c.memo[id] = fieldMemo{}
		}
	}
	if len(c.refUsed) >= len(c.refMemo) {
		clear(c.refMemo)
	} else {
		for _, id := range c.refUsed {
			c.refMemo[id] = refMemo{}
		}
	}
}

// scan finds the record's top-level members, looking through a diagnostic-
// settings envelope or an audit-query wrapper.
func (c *evalCtx) scan() {
	if c.scanned {
		return
	}
	c.scanned = true
	raw := bytes.TrimSpace(c.env.Raw)
	if len(raw) == 0 {
		return
	}
	buf := c.memberBuf[:0]
	if buf == nil {
		buf = make([]member, 0, 32)
	}
	ms, err := scanObject(raw, buf)
	c.memberBuf = ms // kept, grown, for the next event (reset clears it)
	if err != nil {
		if !json.Valid(raw) {
			c.rawErr = fmt.Errorf("playbook: event %s: raw record is not JSON: %w", c.env.ID, err)
		}
		return
	}
	c.isObj = true
	c.members = ms
	outer := ms
	// Wrappers: {time, category, properties:{…}} and {…, auditData:{CreationTime…}}.
	if cat, ok := c.member("category"); ok {
		if s, _ := cat.(string); s != "" {
			if m := c.memberRef("properties"); m != nil && len(m.val) > 0 && m.val[0] == '{' {
				inner, err := scanObject(m.val, c.innerBuf[:0])
				c.innerBuf = inner
				if err == nil {
					c.members, c.outer = inner, outer
					c.keysOK = false
					return
				}
			}
		}
	}
	if m := c.memberRef("auditData"); m != nil && len(m.val) > 0 && m.val[0] == '{' {
		inner, err := scanObject(m.val, c.innerBuf[:0])
		c.innerBuf = inner
		if err == nil {
			for i := range inner {
				if string(inner[i].key) == "CreationTime" {
					c.members, c.outer = inner, outer
					c.keysOK = false
					return
				}
			}
		}
	}
}

// memberRef finds a top-level member as walk finds a key: exactly, else the
// smallest key equal under case folding.
func (c *evalCtx) memberRef(key string) *member {
	if i := c.memberIndex(key); i >= 0 {
		return &c.members[i]
	}
	return nil
}

// memberIndex is memberRef's index in c.members, -1 when absent.
func (c *evalCtx) memberIndex(key string) int {
	if c.set != nil && key != "" && c.set.prog.lenMask&lenBit(len(key)) != 0 && isASCII(key) {
		return c.findKey(key, keySigString(key))
	}
	for i := range c.members {
		if string(c.members[i].key) == key {
			return i
		}
	}
	if key == "" {
		return -1
	}
	// Case-insensitive: same length (as before) and, for ASCII first
	// bytes, the same first letter, before the full comparison.
	first := foldASCII(key[0])
	best := -1
	for i := range c.members {
		m := &c.members[i]
		if len(m.key) != len(key) {
			continue
		}
		if b := m.key[0]; b < utf8.RuneSelf && first < utf8.RuneSelf && foldASCII(b) != first {
			continue
		}
		if bytes.EqualFold(m.key, []byte(key)) && (best < 0 || string(m.key) < string(c.members[best].key)) {
			best = i
		}
	}
	return best
}

func foldASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// member returns the decoded value of a top-level member of the record.
func (c *evalCtx) member(key string) (any, bool) {
	c.scan()
	m := c.memberRef(key)
	if m == nil {
		return nil, false
	}
	return c.memberValue(m)
}

// memberValue decodes a member of c.members on first use.
func (c *evalCtx) memberValue(m *member) (any, bool) {
	if !m.done {
		m.done = true
		v, ok := decodeValue(m.val)
		m.v, m.bad = v, !ok
		if !ok && c.rawErr == nil {
			c.rawErr = fmt.Errorf("playbook: event %s: raw record member %q is not JSON", c.env.ID, m.key)
		}
	}
	if m.bad {
		return nil, false
	}
	return m.v, true
}

// rawAll returns the whole record (inside any wrapper), decoded.
func (c *evalCtx) rawAll() any {
	if c.fullOK {
		return c.full
	}
	c.fullOK = true
	c.scan()
	if !c.isObj {
		var v any
		if json.Unmarshal(c.env.Raw, &v) == nil {
			c.full = v
		}
		return c.full
	}
	m := make(map[string]any, len(c.members))
	for i := range c.members {
		k := string(c.members[i].key)
		if v, ok := c.member(k); ok && string(c.memberRef(k).key) == k {
			m[k] = v
		} else if ok {
			// a case-variant duplicate: decode it on its own
			if v, ok := decodeValue(c.members[i].val); ok {
				m[k] = v
			}
		}
	}
	c.full = m
	return m
}

// envValue returns an envelope field as a string ("" when unset).
func envValue(env *event.Envelope, name string) string {
	switch name {
	case "id":
		return env.ID
	case "source":
		return string(env.Source)
	case "kind":
		return env.Kind
	case "time":
		if env.Time.IsZero() {
			return ""
		}
		return env.Time.UTC().Format(time.RFC3339Nano)
	case "tenant_id":
		return env.TenantID
	case "user":
		return env.User
	case "user_id":
		return env.UserID
	case "ip":
		return env.IP
	case "mailbox":
		return env.Mailbox
	case "rule_id":
		return env.RuleID
	}
	return env.AlertField(name)
}

// resolve returns the value of r for this event; elem is the current list
// element inside any/all. ok is false when the field is absent.
func (c *evalCtx) resolve(r ref, elem any) (any, bool) {
	switch {
	case r.root == rootElem:
		if len(r.path) == 0 {
			return elem, true
		}
		return walk(elem, r.path)
	case r.root == rootRaw:
		if len(r.path) == 0 {
			v := c.rawAll()
			return v, v != nil
		}
		if strings.HasPrefix(r.path[0], selMark) {
			v := c.rawAll()
			if v == nil {
				return nil, false
			}
			return walk(v, r.path)
		}
		v, ok := c.member(r.path[0])
		if !ok {
			return nil, false
		}
		if len(r.path) == 1 {
			return v, true
		}
		return walk(v, r.path[1:])
	case r.class == refHelper || (r.class == 0 && helperFields[r.root]):
		return c.helper(r.root), true
	case r.class == refEnv || envFields[r.root]:
		v := envValue(c.env, r.root)
		if v == "" {
			return nil, false
		}
		return v, true
	}
	return nil, false
}

func (c *evalCtx) helper(name string) any {
	switch name {
	case helperForwardRecipients:
		if !c.fwdDone {
			c.fwdDone = true
			c.fwd = []any{}
			for _, r := range c.forwardRecipients() {
				c.fwd = append(c.fwd, r)
			}
		}
		return c.fwd
	case helperExternalRecipients:
		if !c.extDone {
			c.extDone = true
			c.ext = []any{}
			for _, r := range c.forwardRecipients() {
				if c.set.isExternal(r, c.env.User) && c.set.isExternal(r, c.env.Mailbox) {
					c.ext = append(c.ext, r)
				}
			}
		}
		return c.ext
	}
	return []any{}
}

// forwardRecipients is ForwardRecipients(c.env), once per event. Only a
// record with a top-level "Operation" naming an operation that forwards
// (New-InboxRule, Set-InboxRule, Set-Mailbox, UpdateInboxRules, any case)
// can have recipients: the others are answered from the scanned members,
// without decoding the record.
func (c *evalCtx) forwardRecipients() []string {
	if c.recipDone {
		return c.recip
	}
	c.recipDone = true
	c.scan()
	if !c.isObj {
		c.recip = ForwardRecipients(c.env)
		return c.recip
	}
	// The record's own top-level members, exact keys, the last of
	// duplicates (as json.Unmarshal into a map reads them).
	top, own := c.members, true
	if c.outer != nil {
		top, own = c.outer, false
	}
	var op, params, props *member
	for i := range top {
		switch string(top[i].key) {
		case "Operation":
			op = &top[i]
		case "Parameters":
			params = &top[i]
		case "OperationProperties":
			props = &top[i]
		}
	}
	value := func(m *member) any {
		if m == nil {
			return nil
		}
		if own {
			v, _ := c.memberValue(m)
			return v
		}
		v, _ := decodeValue(m.val)
		return v
	}
	opName, _ := value(op).(string)
	if !forwardingOperation(opName) {
		return nil
	}
	c.recip = forwardRecipientsOf(opName, value(params), value(props))
	return c.recip
}

// decodeEmbedded decodes a string that holds a JSON object or array.
func decodeEmbedded(s string) (any, bool) {
	t := strings.TrimSpace(s)
	if len(t) < 2 || len(t) > maxEmbeddedJSON || (t[0] != '[' && t[0] != '{') {
		return nil, false
	}
	// decodeValue gives what encoding/json gives (FuzzDecodeValue), faster
	return decodeValue([]byte(t))
}

// scalarString renders a scalar as the string conditions compare; ok is false
// for null, lists and objects.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case int:
		return strconv.Itoa(t), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case uint64:
		return strconv.FormatUint(t, 10), true
	}
	return "", false
}

// number parses a scalar as a number.
func number(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint64:
		return float64(t), true
	case string:
		return numberString(t)
	}
	return 0, false
}

// numberString is number for a string.
func numberString(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if !maybeNumber(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// parseIP accepts the spellings Microsoft uses: bare v4/v6, v4:port, [v6]:port,
// ::ffff:v4 (unmapped to v4), and v6 zones are refused.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return parseIP(s[1 : len(s)-1])
	}
	return netip.Addr{}, false
}
