package playbook

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/responder-sec/responder/internal/event"
)

// The compiled matcher. A Set compiles the Sigma rules it runs into its own
// program (the rules themselves stay immutable and shareable): every field a
// rule or the index reads gets an id, and conditions refer to fields by id.
// Per event, the evalCtx keeps a memo indexed by field id: a field is
// resolved (path walked, transform applied) once per event, and its scalar
// leaves are flattened once and carry what comparisons derive from them (the
// string form, the lower-cased form, the parsed number), so that rules that
// read the same field share the work and comparisons allocate nothing after
// the first. The memo is invalidated in O(1) per event by a generation
// counter.
//
// The rule's tree (sigmaNode) is what the program is compiled from; its
// direct evaluation is the reference of the differential tests and of
// FuzzSigma, and lives with them (reference_test.go).

// setProg is a Set's compiled program.
type setProg struct {
	fields    []*sigmaField // by field id
	fieldRefs [][]int32     // by field id: its paths' ids (none for virtual fields)
	refs      []ref         // by path id
	refMember []int32       // by path id: the top-level member it starts from, or -1
	members   []string      // by member id: the member's name
	memberSig []uint32      // by member id: keySig of the name (0: not ASCII)
	memberB   [][]byte      // by member id: the name as bytes
	lenMask   uint64        // bit n: some name is n bytes long (n < 63); bit 63: some is longer
	matches   int           // compiled field matches (memo slots)
	// srcFields: by source, the fields its units and indexes read (the
	// slots Set.Decode fills for an event of that source).
	srcFields map[event.Source][]int32
	// srcReads and srcHelpers: by source, the top-level members the
	// playbooks' own conditions read, and whether they read the forwarding
	// helpers (Set.Decode decodes and computes them too).
	srcReads   map[event.Source][]string
	srcHelpers map[event.Source]bool
}

func lenBit(n int) uint64 {
	return 1 << uint(min(n, 63))
}

// keySig is a member key's signature for case-insensitive lookups: its
// length and three of its bytes, ASCII-folded. Two ASCII keys equal under
// case folding have the same signature; a key that is equal under folding
// to an ASCII name and as long is ASCII too (a multi-byte rune would make it
// shorter in runes), so comparing signatures leaves out no candidate.
func keySig(k []byte) uint32 {
	n := len(k)
	if n == 0 {
		return 1
	}
	return uint32(n&0xff) | uint32(foldASCII(k[0]))<<8 | uint32(foldASCII(k[n/2]))<<16 | uint32(foldASCII(k[n-1]))<<24
}

// keySigString is keySig of a string.
func keySigString(k string) uint32 {
	n := len(k)
	if n == 0 {
		return 1
	}
	return uint32(n&0xff) | uint32(foldASCII(k[0]))<<8 | uint32(foldASCII(k[n/2]))<<16 | uint32(foldASCII(k[n-1]))<<24
}

// matchKey identifies a field match by what it computes.
func matchKey(field int32, t *sigmaFieldMatch) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%t", field, t.all)
	for i := range t.values {
		v := &t.values[i]
		fmt.Fprintf(&b, "|%d,%q,%t,%q,%v,%t", v.kind, v.s, v.cased, v.cmp, v.num, v.exists)
		for _, g := range v.glob {
			fmt.Fprintf(&b, ",%t%t%q", g.star, g.any, g.lit)
		}
		if v.re != nil {
			fmt.Fprintf(&b, ",re%q", v.re.String())
		}
		for _, n := range v.nets {
			fmt.Fprintf(&b, ",net%s", n)
		}
	}
	return b.String()
}

// progBuilder interns fields, paths and members, and compiles rules once
// per Set.
type progBuilder struct {
	prog     *setProg
	byKey    map[string]int32
	byPtr    map[*sigmaField]int32
	byRef    map[string]int32
	byMember map[string]int32
	byMatch  map[string]*cField
	compiled map[*SigmaRule]cnode
}

func newProgBuilder(p *setProg) *progBuilder {
	return &progBuilder{prog: p, byKey: map[string]int32{}, byPtr: map[*sigmaField]int32{},
		byRef: map[string]int32{}, byMember: map[string]int32{}, byMatch: map[string]*cField{}, compiled: map[*SigmaRule]cnode{}}
}

// refID interns a path.
func (b *progBuilder) refID(r ref) int32 {
	k := r.root + "\x00" + r.text
	if id, ok := b.byRef[k]; ok {
		return id
	}
	id := int32(len(b.prog.refs))
	b.byRef[k] = id
	b.prog.refs = append(b.prog.refs, r)
	mid := int32(-1)
	if r.root == rootRaw && len(r.path) > 0 && !strings.HasPrefix(r.path[0], selMark) {
		name := r.path[0]
		x, ok := b.byMember[name]
		if !ok {
			x = int32(len(b.prog.members))
			b.byMember[name] = x
			b.prog.members = append(b.prog.members, name)
			b.prog.memberB = append(b.prog.memberB, []byte(name))
			sig := uint32(0)
			if isASCII(name) {
				sig = keySig([]byte(name))
			}
			b.prog.memberSig = append(b.prog.memberSig, sig)
			b.prog.lenMask |= lenBit(len(name))
		}
		mid = x
	}
	b.prog.refMember = append(b.prog.refMember, mid)
	return id
}

// fieldID interns a field: fields that read the same paths with the same
// transform share an id (and so a memo slot).
func (b *progBuilder) fieldID(f *sigmaField) int32 {
	if id, ok := b.byPtr[f]; ok {
		return id
	}
	id := int32(len(b.prog.fields))
	if f.virtual == nil {
		k := f.key()
		if x, ok := b.byKey[k]; ok {
			b.byPtr[f] = x
			return x
		}
		b.byKey[k] = id
	}
	b.byPtr[f] = id
	b.prog.fields = append(b.prog.fields, f)
	var refs []int32
	if f.virtual == nil {
		for _, r := range f.refs {
			refs = append(refs, b.refID(r))
		}
	}
	b.prog.fieldRefs = append(b.prog.fieldRefs, refs)
	return id
}

func (b *progBuilder) rule(r *SigmaRule) cnode {
	if n, ok := b.compiled[r]; ok {
		return n
	}
	n := b.node(r.cond, 0)
	b.compiled[r] = n
	return n
}

// containsReq finds a field match that n cannot hold without: a field whose
// leaves must contain (case-insensitively) one of the values. A rule that
// no value selects is filed in its source's contains index by it
// (containsIndex), so that it runs only on events whose field contains one
// of the words. And: any
// kid's; or: every kid's, on the same field, values joined; a field match
// of case-insensitive contains values (not |all): itself.
func (b *progBuilder) containsReq(n sigmaNode, depth int) (*sigmaFieldMatch, bool) {
	if depth > 4*maxSigmaCondDepth {
		return nil, false
	}
	switch t := n.(type) {
	case *sigmaGuard:
		return b.containsReq(t.sigmaNode, depth+1)
	case *sigmaFieldMatch:
		if t.all || len(t.values) == 0 {
			return nil, false
		}
		for i := range t.values {
			if v := &t.values[i]; v.kind != svContains || v.cased {
				return nil, false
			}
		}
		return t, true
	case *sigmaAnd:
		for _, k := range t.kids {
			if fm, ok := b.containsReq(k, depth+1); ok {
				return fm, true
			}
		}
	case *sigmaOr:
		var out *sigmaFieldMatch
		for _, k := range t.kids {
			fm, ok := b.containsReq(k, depth+1)
			if !ok {
				return nil, false
			}
			if out == nil {
				cp := *fm
				cp.values = slices.Clone(fm.values)
				out = &cp
				continue
			}
			if b.fieldID(fm.field) != b.fieldID(out.field) {
				return nil, false
			}
			out.values = append(out.values, fm.values...)
		}
		return out, out != nil
	}
	return nil, false
}

// node compiles a condition tree. Depth is bounded at load (maxSigmaCondDepth).
func (b *progBuilder) node(n sigmaNode, depth int) cnode {
	if depth > 4*maxSigmaCondDepth {
		return cFalse{}
	}
	switch t := n.(type) {
	case *sigmaAnd:
		out := &cAnd{kids: make([]cnode, 0, len(t.kids))}
		for _, k := range t.kids {
			out.kids = append(out.kids, b.node(k, depth+1))
		}
		return out
	case *sigmaOr:
		out := &cOr{kids: make([]cnode, 0, len(t.kids))}
		for _, k := range t.kids {
			out.kids = append(out.kids, b.node(k, depth+1))
		}
		return out
	case *sigmaNot:
		return &cNot{kid: b.node(t.kid, depth+1)}
	case *sigmaGuard:
		return b.node(t.sigmaNode, depth+1)
	case *sigmaFieldMatch:
		// Identical field matches (same field, values and modifiers) share
		// one node, whose result is memoised per event: rules that test the
		// same thing (status: success, eventSource: SecurityComplianceCenter)
		// test it once.
		id := b.fieldID(t.field)
		key := matchKey(id, t)
		if n, ok := b.byMatch[key]; ok {
			n.shared = true
			return n
		}
		out := &cField{id: id, memo: int32(len(b.byMatch)), all: t.all, values: make([]cval, len(t.values))}
		out.containsAny = !t.all && len(t.values) > 0
		for i := range t.values {
			out.values[i] = compileCval(&t.values[i])
			if v := &out.values[i]; v.kind != svContains || v.cased {
				out.containsAny = false
			}
		}
		b.byMatch[key] = out
		b.prog.matches = len(b.byMatch)
		return out
	}
	// nil, and no other type: the parser builds only the types above.
	return cFalse{}
}

// cnode is a compiled condition.
type cnode interface {
	eval(c *evalCtx) bool
}

type cAnd struct{ kids []cnode }
type cOr struct{ kids []cnode }
type cNot struct{ kid cnode }
type cFalse struct{}

func (n *cAnd) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if !k.eval(c) {
			return false
		}
	}
	return true
}

func (n *cOr) eval(c *evalCtx) bool {
	for _, k := range n.kids {
		if k.eval(c) {
			return true
		}
	}
	return false
}

func (n *cNot) eval(c *evalCtx) bool { return !n.kid.eval(c) }
func (cFalse) eval(*evalCtx) bool    { return false }

// cField is a compiled sigmaFieldMatch.
type cField struct {
	id     int32 // field id
	memo   int32 // result memo slot
	all    bool
	values []cval
	// shared: more than one place of the program tests this; only then is
	// the result kept in the memo (a slot of the memo read cold costs more
	// than testing a prepared field once).
	shared bool
	// containsAny: every value is a case-insensitive contains and any one
	// suffices (no |all): evalNow tests each leaf against the values in
	// one loop (containsAny).
	containsAny bool
}

// cval is a sigmaValue with what matching needs precomputed.
type cval struct {
	sigmaValue
	sb       []byte  // s, for bytes.Contains on lower-cased leaves
	sbMask   uint64  // byteMask(sb)
	patASCII bool    // s is ASCII
	patNum   float64 // s as a number (strconv.ParseFloat, as numEqual)
	patNumOK bool
}

func compileCval(v *sigmaValue) cval {
	cv := cval{sigmaValue: *v, sb: []byte(v.s), patASCII: isASCII(v.s)}
	cv.sbMask = byteMask(cv.sb)
	if f, err := strconv.ParseFloat(v.s, 64); err == nil {
		cv.patNum, cv.patNumOK = f, true
	}
	return cv
}

func (f *cField) eval(c *evalCtx) bool {
	if !f.shared {
		return f.evalNow(c)
	}
	r := &c.matchMemo[f.memo]
	if r.gen == c.gen {
		return r.res
	}
	res := f.evalNow(c)
	*r = matchMemo{gen: c.gen, res: res}
	return res
}

func (f *cField) evalNow(c *evalCtx) bool {
	m := c.field(f.id)
	if f.containsAny {
		return f.evalContainsAny(c, m)
	}
	if f.all {
		for i := range f.values {
			if !f.values[i].match(c, m) {
				return false
			}
		}
		return true
	}
	for i := range f.values {
		if f.values[i].match(c, m) {
			return true
		}
	}
	return false
}

// evalContainsAny is evalNow for a containsAny match: what matchLeaf's
// case-insensitive contains decides for any value and any leaf, leaf by
// leaf (the answer does not depend on the order), each leaf's lower-cased
// bytes and byte mask read once.
func (f *cField) evalContainsAny(c *evalCtx, m *fieldMemo) bool {
	if !m.present {
		return false
	}
	leaves := c.leaves(m)
	found := false
	for i := range leaves {
		c.eachWordIn(&leaves[i], f.values, func(int) bool {
			found = true
			return false
		})
		if found {
			return true
		}
	}
	return false
}

// eachWordIn calls hit with the index of each of words (case-insensitive
// contains values) that leaf l contains, as matchLeaf's contains decides
// (the leaf's lower-cased bytes, its byte mask read once; an empty word is
// in every string leaf), until hit returns false. A leaf that is no scalar
// contains nothing. evalContainsAny and the contains index share it.
func (c *evalCtx) eachWordIn(l *leaf, words []cval, hit func(j int) bool) {
	s, ok := l.str()
	if !ok {
		return
	}
	var lb []byte
	var mask uint64
	loaded := false
	for j := range words {
		v := &words[j]
		if v.s == "" {
			if !hit(j) {
				return
			}
			continue
		}
		if len(v.s) > len(s) {
			continue
		}
		if !loaded {
			lb = c.lowerBytes(l)
			mask, loaded = l.lowMask(lb), true
		}
		if v.sbMask&^mask == 0 && bytes.Contains(lb, v.sb) && !hit(j) {
			return
		}
	}
}

// matchMemo is one field match's result for the current event.
type matchMemo struct {
	gen uint32
	res bool
}

// match is sigmaValue.match over the memo.
func (v *cval) match(c *evalCtx, m *fieldMemo) bool {
	switch v.kind {
	case svExists:
		has := false
		for i := range m.vals {
			if m.vals[i].v != nil {
				has = true
				break
			}
		}
		return (m.present && has) == v.exists
	case svNull:
		if !m.present {
			return true
		}
		for i := range m.vals {
			if m.vals[i].v == nil {
				return true
			}
		}
		return false
	}
	if !m.present {
		return false
	}
	leaves := c.leaves(m)
	for i := range leaves {
		if v.matchLeaf(c, &leaves[i]) {
			return true
		}
	}
	return false
}

// matchLeaf is sigmaValue.matchScalar over a memoised leaf; it gives the same
// answer for every input (the fast paths apply where they are exact: ASCII
// case folding; anything else takes the reference comparison).
func (v *cval) matchLeaf(c *evalCtx, l *leaf) bool {
	switch v.kind {
	case svNum:
		n, ok := l.number()
		if !ok {
			return false
		}
		switch v.cmp {
		case "gt":
			return n > v.num
		case "gte":
			return n >= v.num
		case "lt":
			return n < v.num
		}
		return n <= v.num
	case svCIDR:
		if l.flags&lfStr == 0 {
			return false
		}
		a, ok := parseIP(l.s)
		return ok && v.nets[0].Contains(a)
	}
	if f, ok := l.x.(float64); ok && v.kind == svEq {
		// A number equals the value when the value is that number: its
		// shortest text (scalarString) parses back to it exactly, so this
		// is what the string comparison and numEqual below decide.
		return v.patNumOK && f == v.patNum
	}
	s, ok := l.str()
	if !ok {
		return false
	}
	switch v.kind {
	case svRe:
		return v.re.MatchString(s)
	case svEq:
		if v.cased {
			if s == v.s {
				return true
			}
		} else if v.patASCII && l.ascii() {
			if len(s) == len(v.s) && asciiEqualFold(s, v.s) {
				return true
			}
		} else if strings.EqualFold(s, v.s) {
			return true
		}
		if l.flags&lfStr == 0 || (len(s) > 0 && (s[0] >= '0' && s[0] <= '9' || s[0] == '-')) {
			if !v.patNumOK {
				return false
			}
			n, ok := l.parsed()
			return ok && n == v.patNum
		}
		return false
	case svContains:
		if v.cased {
			return strings.Contains(s, v.s)
		}
		// containsFold(s, v.s), which is Contains(ToLower(s), v.s) with
		// these two early answers.
		if v.s == "" {
			return true
		}
		if len(v.s) > len(s) {
			return false
		}
		// a leaf that lacks one of the pattern's bytes cannot contain it
		lb := c.lowerBytes(l)
		if v.sbMask&^l.lowMask(lb) != 0 {
			return false
		}
		return bytes.Contains(lb, v.sb)
	case svPrefix:
		if v.cased {
			return strings.HasPrefix(s, v.s)
		}
		if len(s) < len(v.s) {
			return false
		}
		if v.patASCII && l.ascii() {
			return asciiEqualFold(s[:len(v.s)], v.s)
		}
		return strings.EqualFold(s[:len(v.s)], v.s)
	case svSuffix:
		if v.cased {
			return strings.HasSuffix(s, v.s)
		}
		if len(s) < len(v.s) {
			return false
		}
		if v.patASCII && l.ascii() {
			return asciiEqualFold(s[len(s)-len(v.s):], v.s)
		}
		return strings.EqualFold(s[len(s)-len(v.s):], v.s)
	case svGlob:
		if !v.cased {
			s = l.lower()
		}
		return globMatch(v.glob, s)
	}
	return false
}

// ---- the per-event memo ----

// fieldMemo is one field's values for the current event.
type fieldMemo struct {
	gen     uint32
	present bool
	flat    bool
	vals    []fval
	leaves  []leaf
}

// fval is one value of a field: as read (v), and for a string, the string
// after the field's transform (kept out of an interface: no allocation).
type fval struct {
	v   any
	s   string
	str bool
}

// leaf is one scalar leaf of a field's values, with what comparisons derive
// from it, computed on first use.
type leaf struct {
	x     any     // the value, unless it is a string (then s)
	s     string  // scalarString(x), when lfS
	low   string  // strings.ToLower(s), when lfLow
	lowB  []byte  // the same in c.lowBuf, when lfLowB
	num   float64 // number(x), when lfNumOK
	neq   float64 // strconv.ParseFloat(s), when lfNeqOK
	mask  uint64  // byteMask(lowB), when lfMask
	flags uint16
}

const (
	lfStr       = 1 << iota // x is a string
	lfS                     // s is set (scalarString ok)
	lfASCIIDone             // ascii known
	lfASCII                 // s is ASCII
	lfLow                   // low is set
	lfNumDone               // number(x) tried
	lfNumOK                 // number(x) ok
	lfNeqDone               // ParseFloat(s) tried
	lfNeqOK                 // ParseFloat(s) ok
	lfLowB                  // lowB is set
	lfSDone                 // scalarString(x) tried (non-strings)
	lfMask                  // mask is set
)

// byteMask has bit b&63 set for every byte b of s: a string that contains
// another has every bit of the other's mask (a filter before bytes.Contains,
// exact in what it refuses).
func byteMask(s []byte) uint64 {
	var m uint64
	for _, b := range s {
		m |= 1 << (b & 63)
	}
	return m
}

// lowMask is byteMask of the leaf's lower-cased bytes lb (lowerBytes),
// computed on first use.
func (l *leaf) lowMask(lb []byte) uint64 {
	if l.flags&lfMask == 0 {
		l.flags |= lfMask
		l.mask = byteMask(lb)
	}
	return l.mask
}

// str is scalarString of the leaf's value, rendered on first use.
func (l *leaf) str() (string, bool) {
	if l.flags&(lfS|lfSDone) == 0 {
		l.flags |= lfSDone
		if s, ok := scalarString(l.x); ok {
			l.s = s
			l.flags |= lfS
		}
	}
	return l.s, l.flags&lfS != 0
}

// lowerBytes is strings.ToLower(l.s) in the event's buffer: no allocation
// for ASCII text.
func (c *evalCtx) lowerBytes(l *leaf) []byte {
	if l.flags&lfLowB != 0 {
		return l.lowB
	}
	l.flags |= lfLowB
	start := len(c.lowBuf)
	if l.ascii() {
		n := len(l.s)
		c.lowBuf = slices.Grow(c.lowBuf, n)[:start+n]
		lowerASCII(c.lowBuf[start:start+n], l.s)
	} else {
		// strings.ToLower of non-ASCII text is strings.Map(unicode.ToLower),
		// which writes U+FFFD for an invalid byte as AppendRune does.
		for _, r := range l.s {
			c.lowBuf = utf8.AppendRune(c.lowBuf, unicode.ToLower(r))
		}
	}
	l.lowB = c.lowBuf[start:len(c.lowBuf):len(c.lowBuf)]
	return l.lowB
}

func (l *leaf) ascii() bool {
	if l.flags&lfASCIIDone == 0 {
		l.flags |= lfASCIIDone
		if isASCII(l.s) {
			l.flags |= lfASCII
		}
	}
	return l.flags&lfASCII != 0
}

func (l *leaf) lower() string {
	if l.flags&lfLow == 0 {
		l.flags |= lfLow
		l.low = strings.ToLower(l.s)
	}
	return l.low
}

func (l *leaf) number() (float64, bool) {
	if l.flags&lfNumDone == 0 {
		l.flags |= lfNumDone
		var f float64
		var ok bool
		if l.flags&lfStr != 0 {
			f, ok = numberString(l.s)
		} else {
			f, ok = number(l.x)
		}
		if ok {
			l.num = f
			l.flags |= lfNumOK
		}
	}
	return l.num, l.flags&lfNumOK != 0
}

func (l *leaf) parsed() (float64, bool) {
	if l.flags&lfNeqDone == 0 {
		l.flags |= lfNeqDone
		// maybeNumber spares ParseFloat's error for text that is no number
		if maybeNumber(l.s) {
			if f, err := strconv.ParseFloat(l.s, 64); err == nil {
				l.neq = f
				l.flags |= lfNeqOK
			}
		}
	}
	return l.neq, l.flags&lfNeqOK != 0
}

// refMemo is one path's value for the current event.
type refMemo struct {
	gen uint32
	ok  bool
	v   any
}

// memberMemo is where a top-level member is in c.members (-1: absent).
type memberMemo struct {
	gen uint32
	idx int32
}

// beginMatch starts a new evaluation of the event: the memo is empty.
func (c *evalCtx) beginMatch() {
	var p *setProg
	if c.set != nil {
		p = &c.set.prog
	} else {
		p = &setProg{}
	}
	if len(c.memo) != len(p.fields) || len(c.refMemo) != len(p.refs) || len(c.memberMemo) != len(p.members) || len(c.matchMemo) != p.matches {
		c.memo = make([]fieldMemo, len(p.fields))
		c.refMemo = make([]refMemo, len(p.refs))
		c.memberMemo = make([]memberMemo, len(p.members))
		c.matchMemo = make([]matchMemo, p.matches)
		c.memoUsed, c.refUsed = c.memoUsed[:0], c.refUsed[:0]
		c.gen = 0
	}
	c.gen++
	if c.gen == 0 {
		clear(c.memo)
		clear(c.refMemo)
		clear(c.memberMemo)
		clear(c.matchMemo)
		c.gen = 1
	}
	// Buffers are kept for the next event unless one event made them large;
	// they are only truncated (reset clears what was used).
	c.valHW = max(c.valHW, len(c.valBuf))
	if cap(c.valBuf) > maxKeptBuf {
		c.valBuf, c.valHW = nil, 0
	}
	c.valBuf = c.valBuf[:0]
	c.leafHW = max(c.leafHW, len(c.leafBuf))
	if cap(c.leafBuf) > maxKeptBuf {
		c.leafBuf, c.leafHW = nil, 0
	}
	c.leafBuf = c.leafBuf[:0]
	if cap(c.lowBuf) > 16*maxKeptBuf {
		c.lowBuf = nil
	}
	c.lowBuf = c.lowBuf[:0]
}

// prepare starts an evaluation of the event (beginMatch) and fills the
// slots of the fields its source's rules and indexes read: each field
// resolved, its leaves flattened, and what comparisons derive from a string
// leaf (ASCII or not, the lower-cased form, the parsed number) computed, so
// that matching reads the slots and derives nothing; and decodes the
// members the playbooks' own conditions read, and the forwarding
// recipients when they read them. Set.Decode calls it.
func (c *evalCtx) prepare() {
	c.beginMatch()
	p := &c.set.prog
	for _, name := range p.srcReads[c.env.Source] {
		if m := c.memberRef(name); m != nil {
			_, _ = c.memberValue(m)
		}
	}
	if p.srcHelpers[c.env.Source] {
		c.forwardRecipients()
	}
	for _, id := range p.srcFields[c.env.Source] {
		m := c.field(id)
		if !m.present {
			continue
		}
		leaves := c.leaves(m)
		for i := range leaves {
			l := &leaves[i]
			s, ok := l.str()
			if !ok {
				continue
			}
			c.lowerBytes(l)
			l.number()
			if l.flags&lfStr == 0 || (len(s) > 0 && (s[0] >= '0' && s[0] <= '9' || s[0] == '-')) {
				l.parsed()
			}
		}
	}
	c.prepGen = c.gen
}

// maxKeptBuf bounds the per-event buffers a pooled evalCtx keeps.
const maxKeptBuf = 4096

// field returns the memo of field id for the current event, resolving it on
// first use.
func (c *evalCtx) field(id int32) *fieldMemo {
	if len(c.memo) != len(c.set.prog.fields) {
		c.beginMatch()
	}
	m := &c.memo[id]
	if m.gen == c.gen {
		return m
	}
	f := c.set.prog.fields[id]
	*m = fieldMemo{gen: c.gen}
	if len(c.memoUsed) < len(c.memo) {
		c.memoUsed = append(c.memoUsed, id)
	}
	start := len(c.valBuf)
	if f.virtual != nil {
		var tmp []any
		tmp, m.present = f.virtual(c, c.virtBuf[:0])
		for _, v := range tmp {
			fv := fval{v: v}
			fv.s, fv.str = v.(string)
			c.valBuf = append(c.valBuf, fv)
		}
		clear(tmp)
		c.virtBuf = tmp[:0]
	} else {
		for _, rid := range c.set.prog.fieldRefs[id] {
			v, ok := c.resolveRef(rid)
			if !ok {
				continue
			}
			m.present = true
			fv := fval{v: v}
			if s, ok := v.(string); ok {
				fv.s, fv.str = s, true
				switch f.xform {
				case xfTrimDot:
					fv.s = strings.TrimSuffix(s, ".")
				case xfResultStr:
					fv.s = normResultStatus(s)
				}
			}
			c.valBuf = append(c.valBuf, fv)
		}
	}
	m.vals = c.valBuf[start:len(c.valBuf):len(c.valBuf)]
	return m
}

// resolveRef is resolve(ref) for a path of the set's program, memoised per
// event; a top-level member is looked up once per event however many paths
// start from it.
func (c *evalCtx) resolveRef(rid int32) (any, bool) {
	rm := &c.refMemo[rid]
	if rm.gen == c.gen {
		return rm.v, rm.ok
	}
	p := &c.set.prog
	r := &p.refs[rid]
	var v any
	var ok bool
	if mid := p.refMember[rid]; mid >= 0 {
		if v, ok = c.memberByID(mid); ok && len(r.path) > 1 {
			v, ok = walk(v, r.path[1:])
		}
	} else {
		v, ok = c.resolve(*r, nil)
	}
	if !ok {
		v = nil
	}
	*rm = refMemo{gen: c.gen, ok: ok, v: v}
	if len(c.refUsed) < len(c.refMemo) {
		c.refUsed = append(c.refUsed, rid)
	}
	return v, ok
}

// memberByID is member(name of member id mid), memoising where it is.
func (c *evalCtx) memberByID(mid int32) (any, bool) {
	mm := &c.memberMemo[mid]
	if mm.gen != c.gen {
		mm.gen, mm.idx = c.gen, int32(c.findMember(mid))
	}
	if mm.idx < 0 || int(mm.idx) >= len(c.members) {
		return nil, false
	}
	return c.memberValue(&c.members[mm.idx])
}

// findMember is memberIndex(name of mid): the first exact key, else the
// smallest key as long and equal under case folding; candidates are found
// by signature (keySig), computed for the event's keys once per match.
func (c *evalCtx) findMember(mid int32) int {
	c.scan()
	p := &c.set.prog
	sig := p.memberSig[mid]
	if sig == 0 {
		return c.memberIndex(p.members[mid])
	}
	return c.findKey(p.members[mid], sig)
}

// findKey is memberIndex(name) for an ASCII name whose length some name of
// the program has (lenMask), sig its keySig: candidates are found by
// signature, the event's keys filed once per event.
func (c *evalCtx) findKey(name string, sig uint32) int {
	if !c.keysOK {
		c.indexKeys()
	}
	best, exact := -1, -1
	for n := c.keyTab[sigBucket(sig)] - 1; n >= 0; n = c.keyNodes[n].next - 1 {
		kn := &c.keyNodes[n]
		if kn.sig != sig {
			continue
		}
		i := int(kn.idx)
		k := c.members[i].key
		if string(k) == name {
			exact = i // the chain runs backwards: the last one seen is the first
			continue
		}
		if asciiEqualFoldBytes(k, name) {
			// the smallest key; of equal ones the first (the chain runs backwards)
			if bk := c.members[max(best, 0)].key; best < 0 || string(k) <= string(bk) {
				best = i
			}
		}
	}
	if exact >= 0 {
		return exact
	}
	return best
}

const keyTabSize = 64

func sigBucket(sig uint32) uint32 { return (sig * 0x9e3779b1) >> (32 - 6) }

// keyNode is one member key filed by indexKeys.
type keyNode struct {
	sig  uint32
	idx  int32 // in c.members
	next int32 // 1-based; 0 ends the chain
}

// indexKeys files the event's member keys by signature in a hash table of
// chains, leaving out keys of a length no name of the program has.
func (c *evalCtx) indexKeys() {
	c.keysOK = true
	tab := &c.keyTab
	*tab = [keyTabSize]int32{}
	nodes := c.keyNodes[:0]
	mask := c.set.prog.lenMask
	members := c.members
	for i := range members {
		k := members[i].key
		n := len(k)
		if mask&lenBit(n) == 0 {
			continue
		}
		sig := uint32(1) // keySig, inlined
		if n > 0 {
			sig = uint32(n&0xff) | uint32(foldASCII(k[0]))<<8 | uint32(foldASCII(k[n/2]))<<16 | uint32(foldASCII(k[n-1]))<<24
		}
		b := sigBucket(sig)
		nodes = append(nodes, keyNode{sig: sig, idx: int32(i), next: tab[b]})
		tab[b] = int32(len(nodes))
	}
	c.keyNodes = nodes
}

// leaves flattens a field's values into scalar leaves once per event, in
// the order and within the bounds of sigmaValue.matchAny (maxLeaves non-null
// scalars, containers nested deeper than maxCondDepth skipped).
func (c *evalCtx) leaves(m *fieldMemo) []leaf {
	if m.flat {
		return m.leaves
	}
	m.flat = true
	start := len(c.leafBuf)
	budget := maxLeaves
	for i := range m.vals {
		fv := &m.vals[i]
		if fv.str {
			if budget > 0 {
				budget--
				c.leafBuf = append(c.leafBuf, leaf{s: fv.s, flags: lfStr | lfS})
			}
			continue
		}
		c.flatten(fv.v, &budget, 0)
	}
	m.leaves = c.leafBuf[start:len(c.leafBuf):len(c.leafBuf)]
	return m.leaves
}

func (c *evalCtx) flatten(x any, budget *int, depth int) {
	switch t := x.(type) {
	case []any:
		if depth > maxCondDepth {
			return
		}
		for _, e := range t {
			if *budget <= 0 {
				return
			}
			c.flatten(e, budget, depth+1)
		}
		return
	case map[string]any:
		if depth > maxCondDepth {
			return
		}
		for _, e := range t {
			if *budget <= 0 {
				return
			}
			c.flatten(e, budget, depth+1)
		}
		return
	case nil:
		return
	}
	if *budget <= 0 {
		return
	}
	*budget--
	var l leaf
	if s, ok := x.(string); ok {
		l.s, l.flags = s, lfStr|lfS
	} else {
		l.x = x // its text (scalarString) is rendered when a comparison needs it
	}
	c.leafBuf = append(c.leafBuf, l)
}

// lowerASCII writes ASCII s lower-cased into dst (as long as s), eight
// bytes at a time.
func lowerASCII(dst []byte, s string) {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// Bytes are < 0x80: adding 0x80-'A' sets the high bit from 'A' up,
		// adding 0x80-'Z'-1 from past 'Z'; no carry crosses a byte.
		upper := ((x + (0x80-'A')*ones) &^ (x + (0x80-'Z'-1)*ones)) & high
		binary.LittleEndian.PutUint64(dst[i:], x|upper>>2)
	}
	for ; i < len(s); i++ {
		ch := s[i]
		if ch-'A' < 26 {
			ch += 'a' - 'A'
		}
		dst[i] = ch
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiEqualFoldBytes is bytes.EqualFold(k, []byte(name)) for an ASCII
// name as long as k: a key with other bytes is never equal to it (a rune
// of several bytes that folds to an ASCII letter, like U+212A to k, would
// make the key longer than the name).
func asciiEqualFoldBytes(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := k[i], name[i]
		if a == b {
			continue
		}
		if a >= utf8.RuneSelf || foldASCII(a) != foldASCII(b) {
			return false
		}
	}
	return true
}

// asciiEqualFold compares two ASCII strings of the same length ignoring case.
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if a == b {
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
