package playbook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/responder-sec/responder/internal/event"
)

// The index: an event meets only the triggers that can match it. Every
// enabled playbook contributes units (one per Sigma rule, or one; plus one
// for a threshold's follow-up), filed by source, then by a value the unit
// requires: the event kind when trigger.kind is given, else a field that a
// Sigma rule requires to equal one of a few values (riskEventType,
// Operation, an alert name). Units that require no such value are "rest" and
// always evaluated.

type unit struct {
	pb     int32
	rule   int32 // index in Trigger.Sigma; -1 without Sigma
	follow bool  // the threshold's follow-up event
	node   cnode // the compiled rule (nil without Sigma)
	where  string
	// plain: the trigger is the Sigma rule alone (no kind, no conditions),
	// so holds is the source check and the compiled rule.
	plain bool
	// stateful: the playbook has a threshold (it fires only with a counter).
	stateful bool
	src      event.Source
	sigma    *SigmaRule
	// noTarget: the playbook's steps' errors when the event gives no
	// target (stepErrors), shared by its units.
	noTarget []error
}

type setIndex struct {
	units    []unit
	bySrc    map[event.Source]*srcIndex
	stateful bool
}

type srcIndex struct {
	keyed    []*keyedIndex
	contains []*containsIndex
	rest     []int32
}

// containsIndex files units that no value selects but that cannot hold
// unless one field contains, case-insensitively, one of a few words
// (progBuilder.containsReq: "Operation|contains: UpdateInboxRules" or
// Set-Mailbox): each unit under each of its words. An event meets the units
// of the words its field's leaves contain, found in one pass over each leaf
// with every word of the field, rather than each such unit testing its own
// words on every event of its source. It decides what the words decide in
// cField.evalContainsAny: a string leaf, lower-cased, contains the word (an
// empty word: any string leaf).
type containsIndex struct {
	key   string // the field's key (sigmaField.key)
	fid   int32
	words []cval    // distinct words, lower-cased as the rules hold them
	units [][]int32 // by word: the units filed under it
	empty []int32   // units filed under an empty word
	all   []int32
}

// keyedIndex files units by one value: the event kind, or a Sigma field.
// Keys are lower-cased ASCII: a unit that requires a value with other
// characters is filed as rest, and an event value with other characters
// meets every unit of the index (case folding beyond ASCII is not a map
// lookup), so the index never leaves out a unit that could match.
//
// A value that is an integer (numKey) files its units by number in num:
// Sigma compares numbers numerically ("0" equals 0.0, 50074 equals
// "50074"), so an event's leaf meets them by its number, whether the record
// holds a JSON number or numeric text (sign-in ResultType, status codes).
type keyedIndex struct {
	key   string      // "kind" or the field's key
	field *sigmaField // nil for the kind
	fid   int32       // the field's id in the set's program; -1 for the kind
	m     map[string][]int32
	num   map[float64][]int32
	all   []int32 // every unit filed here, in order
}

// numMark prefixes a requirement's value that is an integer (numKey): it
// files by number.
const numMark = "\x00#"

// numKey reports whether a Sigma value is an integer that the index files
// by number: an optional '-' and 1 to 15 digits, so that its float64 is
// exact. For such a value v, a leaf equals v (sigmaValue.matchScalar) exactly
// when the leaf is a number equal to v, or text that starts with a digit or
// '-' and parses (strconv.ParseFloat) to v: text equal to v is such text, and
// no other text folds to digits.
func numKey(s string) (float64, bool) {
	d := strings.TrimPrefix(s, "-")
	if len(d) == 0 || len(d) > 15 {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

func (s *Set) buildIndex() {
	s.idx = setIndex{bySrc: map[event.Source]*srcIndex{}}
	s.prog = setProg{}
	pb := newProgBuilder(&s.prog)
	// How many distinct values each (source, field) could file units
	// under: a unit is filed by the most diverse field it requires, so
	// that many rules on one field spread over many keys.
	diversity := map[string]map[string]bool{}
	for _, p := range s.playbooks {
		t := p.Trigger
		if !p.Enabled || len(t.Kinds) > 0 {
			continue
		}
		for _, r := range t.Sigma {
			if r == nil || r.cond == nil {
				continue
			}
			src := t.Source
			if src == "" {
				src = r.Source
			}
			for _, o := range sigmaOptions(r.cond) {
				k := string(src) + "\x00" + o.field.key()
				if diversity[k] == nil {
					diversity[k] = map[string]bool{}
				}
				for _, v := range o.vals {
					diversity[k][strings.ToLower(v)] = true
				}
			}
		}
	}
	add := func(src event.Source, u unit, key string, field *sigmaField, vals []string) {
		for _, v := range vals {
			if !isASCII(v) {
				key = ""
			}
		}
		si := s.idx.bySrc[src]
		if si == nil {
			si = &srcIndex{}
			s.idx.bySrc[src] = si
		}
		id := int32(len(s.idx.units))
		s.idx.units = append(s.idx.units, u)
		if key == "" {
			si.rest = append(si.rest, id)
			return
		}
		var k *keyedIndex
		for _, x := range si.keyed {
			if x.key == key {
				k = x
			}
		}
		if k == nil {
			k = &keyedIndex{key: key, field: field, fid: -1, m: map[string][]int32{}}
			if field != nil {
				k.fid = pb.fieldID(field)
			}
			si.keyed = append(si.keyed, k)
		}
		k.all = append(k.all, id)
		seen := map[string]bool{}
		for _, v := range vals {
			v = strings.ToLower(v)
			if seen[v] {
				continue
			}
			seen[v] = true
			if n, ok := strings.CutPrefix(v, numMark); ok {
				f, _ := numKey(n)
				if k.num == nil {
					k.num = map[float64][]int32{}
				}
				k.num[f] = append(k.num[f], id)
				continue
			}
			k.m[v] = append(k.m[v], id)
		}
	}
	for i, p := range s.playbooks {
		if !p.Enabled {
			continue
		}
		t := p.Trigger
		if t.Threshold != nil {
			s.idx.stateful = true
		}
		where := whereText(t.Conditions)
		noTarget := stepErrors(p)
		stateful := t.Threshold != nil
		if len(t.Sigma) == 0 {
			u := unit{pb: int32(i), rule: -1, where: where, noTarget: noTarget, stateful: stateful}
			if len(t.Kinds) > 0 {
				add(t.Source, u, "kind", nil, t.Kinds)
			} else {
				add(t.Source, u, "", nil, nil)
			}
		}
		for j, r := range t.Sigma {
			if r == nil || r.cond == nil {
				continue
			}
			src := t.Source
			if src == "" {
				src = r.Source
			}
			u := unit{pb: int32(i), rule: int32(j), where: where, noTarget: noTarget, stateful: stateful, node: pb.rule(r), sigma: r, src: src,
				plain: len(t.Kinds) == 0 && len(t.Conditions) == 0}
			if len(t.Kinds) > 0 {
				add(src, u, "kind", nil, t.Kinds)
				continue
			}
			if o, ok := bestOption(sigmaOptions(r.cond), func(o requirement) int {
				return len(diversity[string(src)+"\x00"+o.field.key()])
			}); ok {
				add(src, u, o.field.key(), o.field, o.vals)
				continue
			}
			if fm, ok := pb.containsReq(r.cond, 0); ok {
				// the words index the unit (containsIndex); the rule
				// runs only on events whose field contains one
				s.idx.fileContains(src, u, fm, pb.fieldID(fm.field))
				continue
			}
			add(src, u, "", nil, nil) // on every event of its source
		}
		if th := t.Threshold; th != nil && th.Then != nil {
			u := unit{pb: int32(i), rule: -1, follow: true, where: where, noTarget: noTarget, stateful: stateful}
			if len(th.Then.Kinds) > 0 {
				add(th.Then.Source, u, "kind", nil, th.Then.Kinds)
			} else {
				add(th.Then.Source, u, "", nil, nil)
			}
		}
	}
	s.prog.srcFields = sourceFields(&s.idx)
	// What the playbooks' own conditions read, per source: the top-level
	// members their paths start from (decoded by Set.Decode, and looked up
	// by signature: evalCtx.memberIndex), and the forwarding helpers.
	s.prog.srcReads = map[event.Source][]string{}
	s.prog.srcHelpers = map[event.Source]bool{}
	for _, p := range s.playbooks {
		if !p.Enabled {
			continue
		}
		t := p.Trigger
		srcs := []event.Source{t.Source}
		if t.Source == "" {
			srcs = srcs[:0]
			for _, r := range t.Sigma {
				if r != nil {
					srcs = append(srcs, r.Source)
				}
			}
		}
		read := func(srcs []event.Source, conds []Condition) {
			for _, c := range conds {
				condRefs(c, func(r ref) {
					if r.root == rootRaw && len(r.path) > 0 && !strings.HasPrefix(r.path[0], selMark) {
						name := r.path[0]
						s.prog.lenMask |= lenBit(len(name))
						for _, src := range srcs {
							if !slices.Contains(s.prog.srcReads[src], name) {
								s.prog.srcReads[src] = append(s.prog.srcReads[src], name)
							}
						}
					}
					if r.class == refHelper {
						for _, src := range srcs {
							s.prog.srcHelpers[src] = true
						}
					}
				}, 0)
			}
		}
		read(srcs, t.Conditions)
		if th := t.Threshold; th != nil && th.Then != nil {
			if th.Then.Source != "" {
				srcs = []event.Source{th.Then.Source}
			}
			read(srcs, th.Then.Conditions)
		}
	}
}

// fileContains adds u to the set's units and files it under each word of
// fm (a match of case-insensitive contains values, any one sufficing) in
// the source's contains index for fm's field.
func (idx *setIndex) fileContains(src event.Source, u unit, fm *sigmaFieldMatch, fid int32) {
	si := idx.bySrc[src]
	if si == nil {
		si = &srcIndex{}
		idx.bySrc[src] = si
	}
	id := int32(len(idx.units))
	idx.units = append(idx.units, u)
	key := fm.field.key()
	var ci *containsIndex
	for _, x := range si.contains {
		if x.key == key {
			ci = x
		}
	}
	if ci == nil {
		ci = &containsIndex{key: key, fid: fid}
		si.contains = append(si.contains, ci)
	}
	ci.all = append(ci.all, id)
	for i := range fm.values {
		w := &fm.values[i]
		if w.s == "" {
			if !slices.Contains(ci.empty, id) {
				ci.empty = append(ci.empty, id)
			}
			continue
		}
		j := slices.IndexFunc(ci.words, func(x cval) bool { return x.s == w.s })
		if j < 0 {
			j = len(ci.words)
			ci.words = append(ci.words, compileCval(w))
			ci.units = append(ci.units, nil)
		}
		if !slices.Contains(ci.units[j], id) {
			ci.units[j] = append(ci.units[j], id)
		}
	}
}

// containsCandidates appends the units of ci whose words a leaf of the
// event's field contains (evalContainsAny's test, word by word).
func (ci *containsIndex) candidates(c *evalCtx, out []int32) []int32 {
	m := c.field(ci.fid)
	if !m.present {
		return out
	}
	leaves := c.leaves(m)
	for i := range leaves {
		l := &leaves[i]
		if _, ok := l.str(); !ok {
			continue
		}
		out = append(out, ci.empty...)
		c.eachWordIn(l, ci.words, func(j int) bool {
			out = append(out, ci.units[j]...)
			return true
		})
	}
	return out
}

// condRefs calls fn with each path a condition reads from the event (not
// those relative to a list element).
func condRefs(c Condition, fn func(ref), depth int) {
	if depth > maxCondDepth {
		return
	}
	switch t := c.(type) {
	case *fieldCond:
		fn(t.field)
	case *quantCond:
		fn(t.list)
	case *notCond:
		condRefs(t.c, fn, depth+1)
	case *boolCond:
		for _, k := range t.conds {
			condRefs(k, fn, depth+1)
		}
	}
}

// sourceFields lists, per source, the ids of the fields that the source's
// units and keyed indexes read, each once: the slots Set.Decode fills.
func sourceFields(idx *setIndex) map[event.Source][]int32 {
	out := map[event.Source][]int32{}
	for src, si := range idx.bySrc {
		seen := map[int32]bool{}
		var ids []int32
		add := func(id int32) {
			if id >= 0 && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		for _, k := range si.keyed {
			add(k.fid)
		}
		for _, k := range si.contains {
			add(k.fid)
		}
		units := slices.Clone(si.rest)
		for _, k := range si.keyed {
			units = append(units, k.all...)
		}
		for _, k := range si.contains {
			units = append(units, k.all...)
		}
		slices.Sort(units)
		for _, id := range units {
			cnodeFields(idx.units[id].node, add, 0)
		}
		out[src] = ids
	}
	return out
}

// cnodeFields calls add with the id of every field a compiled node reads.
func cnodeFields(n cnode, add func(int32), depth int) {
	if depth > 4*maxSigmaCondDepth {
		return
	}
	switch t := n.(type) {
	case *cAnd:
		for _, k := range t.kids {
			cnodeFields(k, add, depth+1)
		}
	case *cOr:
		for _, k := range t.kids {
			cnodeFields(k, add, depth+1)
		}
	case *cNot:
		cnodeFields(t.kid, add, depth+1)
	case *cField:
		add(t.id)
	}
}

// key identifies where a field is read from, for sharing one keyed index.
func (f *sigmaField) key() string {
	var b strings.Builder
	if f.virtual != nil {
		// computed, not read from paths: its own key (field ids share a
		// virtual field by pointer too)
		fmt.Fprintf(&b, "virtual|%s|%p", f.name, f)
		return b.String()
	}
	b.WriteString(strconv.Itoa(f.xform))
	for _, r := range f.refs {
		b.WriteByte('|')
		b.WriteString(r.text)
	}
	return b.String()
}

// requirement: the node holds only when field equals one of vals.
type requirement struct {
	field *sigmaField
	vals  []string
}

// sigmaOptions lists the fields that must equal one of a few values for the
// node to hold (none when there is none): each one files the rule exactly.
func sigmaOptions(n sigmaNode) []requirement {
	switch t := n.(type) {
	case *sigmaFieldMatch:
		// A virtual field (Status of a sign-in) is read through its memo
		// like any other, so it files units too.
		if (t.field.virtual == nil && len(t.field.refs) == 0) || (t.all && len(t.values) > 1) {
			return nil
		}
		var vals []string
		for _, v := range t.values {
			if v.kind != svEq || !isASCII(v.s) {
				return nil
			}
			if looksNumeric(v.s) {
				if _, ok := numKey(v.s); !ok {
					return nil
				}
				vals = append(vals, numMark+v.s)
				continue
			}
			vals = append(vals, v.s)
		}
		return []requirement{{t.field, vals}}
	case *sigmaAnd:
		var out []requirement
		for _, k := range t.kids {
			out = append(out, sigmaOptions(k)...)
		}
		return out
	case *sigmaOr:
		// A field every alternative requires: the union of their values.
		var out []requirement
		if len(t.kids) == 0 {
			return nil
		}
		kids := make([][]requirement, len(t.kids))
		for i, k := range t.kids {
			kids[i] = sigmaOptions(k)
		}
	next:
		for _, first := range kids[0] {
			key := first.field.key()
			for _, o := range out {
				if o.field.key() == key {
					continue next
				}
			}
			all := append([]string(nil), first.vals...)
			for _, kid := range kids[1:] {
				i := slices.IndexFunc(kid, func(o requirement) bool { return o.field.key() == key })
				if i < 0 {
					continue next
				}
				all = append(all, kid[i].vals...)
			}
			out = append(out, requirement{first.field, all})
		}
		return out
	}
	return nil
}

// bestOption picks the requirement to file a rule by: the highest score
// (the field's diversity in the set), then the most specific (the one whose
// shortest value is longest: an alert name over a workload), then the first.
func bestOption(opts []requirement, score func(requirement) int) (requirement, bool) {
	best, bestScore, bestLen := -1, -1, -1
	for i, o := range opts {
		sc := score(o)
		l := 1 << 30
		for _, v := range o.vals {
			l = min(l, len(v))
		}
		if sc > bestScore || (sc == bestScore && l > bestLen) {
			best, bestScore, bestLen = i, sc, l
		}
	}
	if best < 0 {
		return requirement{}, false
	}
	return opts[best], true
}

func looksNumeric(s string) bool {
	_, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return err == nil
}

// candidates returns the units an event meets, in unit order (which is
// playbook order), without duplicates.
func (s *Set) candidates(c *evalCtx, buf []int32) []int32 {
	si := s.idx.bySrc[c.env.Source]
	if si == nil {
		return buf[:0]
	}
	out := buf[:0]
	for _, k := range si.keyed {
		if k.field == nil {
			if !isASCII(c.env.Kind) {
				out = append(out, k.all...)
				continue
			}
			out = append(out, lookupFold(k.m, c.env.Kind)...)
			continue
		}
		m := c.field(k.fid)
		if !m.present {
			continue
		}
		// The leaves, as the rule compares them (a list value matches
		// when an item does).
		leaves := c.leaves(m)
		for i := range leaves {
			l := &leaves[i]
			if l.flags&lfStr == 0 {
				if n, ok := l.number(); ok {
					// A number: its text is a number too, and no key of m
					// is (looksNumeric).
					if k.num != nil {
						out = append(out, k.num[n]...)
					}
					continue
				}
			}
			s, ok := l.str()
			if !ok {
				continue
			}
			if !l.ascii() {
				out = append(out, k.all...)
				continue
			}
			if k.num != nil && l.flags&lfStr != 0 && len(s) > 0 && (s[0] >= '0' && s[0] <= '9' || s[0] == '-') {
				if n, ok := l.parsed(); ok {
					out = append(out, k.num[n]...)
				}
			}
			// Keys are lower-cased: the leaf's lower-cased text (shared
			// with contains comparisons) is the lookup.
			out = append(out, k.m[string(c.lowerBytes(l))]...)
		}
	}
	for _, ci := range si.contains {
		out = ci.candidates(c, out)
	}
	out = append(out, si.rest...)
	if len(out) > 1 {
		// insertion sort: candidate lists are short
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && out[j] < out[j-1]; j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
		w := 1
		for i := 1; i < len(out); i++ {
			if out[i] != out[w-1] {
				out[w] = out[i]
				w++
			}
		}
		out = out[:w]
	}
	return out
}

// lookupFold looks s up in a map of lower-cased keys, without allocating for
// short ASCII strings.
func lookupFold(m map[string][]int32, s string) []int32 {
	var buf [128]byte
	if len(s) > len(buf) {
		return m[strings.ToLower(s)]
	}
	if len(m) == 0 {
		return nil
	}
	b := buf[:0]
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= utf8.RuneSelf {
			return m[strings.ToLower(s)]
		}
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	return m[string(b)]
}
