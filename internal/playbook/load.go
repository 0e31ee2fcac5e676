package playbook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
)

// Limits that keep loading bounded on any input.
const (
	maxFileBytes   = 1 << 20
	maxCondDepth   = 32
	maxWindow      = 31 * 24 * time.Hour
	maxPlaybookLen = 64
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// LoadOptions configures loading.
type LoadOptions struct {
	// VerifiedDomains are the tenant's verified (accepted) domains; a forwarding
	// recipient outside them is external. The domain of the record's own user
	// always counts as internal.
	VerifiedDomains []string
	// BaseDir is where relative in_ip_list paths are read from. Default: the
	// directory given to LoadDir, or the working directory for Load.
	BaseDir string
	// Logger, when set, receives one line per loaded directory.
	Logger *slog.Logger
}

// Problem is one thing wrong with a playbook file.
type Problem struct {
	File     string
	Line     int
	Playbook string // "" when the problem is outside any playbook
	Step     int    // 1-based; 0 when not in a step
	Action   string
	Msg      string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Playbook != "" {
		fmt.Fprintf(&b, "playbook %q: ", p.Playbook)
	}
	if p.Step > 0 {
		fmt.Fprintf(&b, "step %d", p.Step)
		if p.Action != "" {
			fmt.Fprintf(&b, " (%s)", p.Action)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError lists every problem found while loading.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("playbook: %d problem(s):\n%s", len(e.Problems), strings.Join(parts, "\n"))
}

// Set is a validated, compiled set of playbooks. It is immutable and safe for
// concurrent use.
type Set struct {
	playbooks []*Playbook
	verified  map[string]bool
	idx       setIndex
	prog      setProg
	ctxPool   sync.Pool // *evalCtx, reused by Match
	// ctxHot keeps one evalCtx out of the pool, which the collector empties:
	// a matcher that runs event after event reuses its buffers and memo.
	ctxHot atomic.Pointer[evalCtx]
}

// Playbooks returns the playbooks, sorted by name.
func (s *Set) Playbooks() []*Playbook {
	return append([]*Playbook(nil), s.playbooks...)
}

// Lookup returns the playbook called name.
func (s *Set) Lookup(name string) (*Playbook, bool) {
	for _, p := range s.playbooks {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// WithAllEnabled returns a copy of the set in which every playbook is enabled:
// for `playbook test --all` and for testing shipped but disabled playbooks.
func (s *Set) WithAllEnabled() *Set {
	out := &Set{verified: s.verified}
	for _, p := range s.playbooks {
		cp := *p
		cp.Enabled = true
		out.playbooks = append(out.playbooks, &cp)
	}
	out.buildIndex()
	return out
}

// LoadDir loads every *.yaml and *.yml file directly in dir (subdirectories,
// such as testdata/, are not read). The error, a *LoadError, lists every
// problem with file:line, playbook and step.
func LoadDir(dir string, opts LoadOptions) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("playbook: %w", err)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = dir
	}
	l := newLoader(opts)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readBounded(path)
		if err != nil {
			l.probs = append(l.probs, Problem{File: path, Msg: err.Error()})
			continue
		}
		l.file(path, data)
	}
	s, err := l.finish()
	if err != nil {
		return nil, err
	}
	if opts.Logger != nil {
		opts.Logger.Info("playbooks loaded", "dir", dir, "count", len(s.playbooks))
	}
	return s, nil
}

// Load compiles the playbooks in one file's contents; name is used in problems.
func Load(name string, data []byte, opts LoadOptions) (*Set, error) {
	l := newLoader(opts)
	if len(data) > maxFileBytes {
		return nil, &LoadError{Problems: []Problem{{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileBytes)}}}
	}
	l.file(name, data)
	return l.finish()
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("file is larger than %d bytes", maxFileBytes)
	}
	return data, nil
}

// loader collects problems while compiling.
type loader struct {
	opts    LoadOptions
	set     *Set
	probs   []Problem
	ipLists map[string]*ipList
	seen    map[string]Problem // playbook name -> where it was first defined

	// where we are
	fname  string
	pb     string
	step   int
	action string
}

func newLoader(opts LoadOptions) *loader {
	s := &Set{verified: map[string]bool{}}
	for _, d := range opts.VerifiedDomains {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d != "" {
			s.verified[d] = true
		}
	}
	return &loader{opts: opts, set: s, ipLists: map[string]*ipList{}, seen: map[string]Problem{}}
}

func (l *loader) finish() (*Set, error) {
	if len(l.probs) > 0 {
		sort.SliceStable(l.probs, func(i, j int) bool {
			if l.probs[i].File != l.probs[j].File {
				return l.probs[i].File < l.probs[j].File
			}
			return l.probs[i].Line < l.probs[j].Line
		})
		return nil, &LoadError{Problems: l.probs}
	}
	sort.Slice(l.set.playbooks, func(i, j int) bool { return l.set.playbooks[i].Name < l.set.playbooks[j].Name })
	l.set.buildIndex()
	return l.set, nil
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	l.probs = append(l.probs, Problem{File: l.fname, Line: line, Playbook: l.pb, Step: l.step, Action: l.action, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) file(name string, data []byte) {
	l.fname, l.pb, l.step, l.action = name, "", 0, ""
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.probs = append(l.probs, Problem{File: name, Line: yamlErrLine(err), Msg: "YAML: " + err.Error()})
			return
		}
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			if n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
				continue
			}
			l.playbook(n.Content[0])
		}
	}
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// fields checks that n is a mapping with only allowed keys (no duplicates, no
// anchors or aliases) and returns its values by key.
func (l *loader) fields(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, bool) {
	if !l.plain(n) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s must be a mapping", what)
		return nil, false
	}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !l.plain(k) || !l.plain(v) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			l.errf(k, "%s: keys must be strings", what)
			continue
		}
		if !ok[k.Value] {
			l.errf(k, "%s: unknown field %q (allowed: %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.errf(k, "%s: field %q given twice", what, k.Value)
			continue
		}
		out[k.Value] = v
	}
	return out, true
}

// plain refuses anchors, aliases and custom tags: playbooks are reviewed as
// written, and aliases could make a small file expand without bound.
func (l *loader) plain(n *yaml.Node) bool {
	if n == nil {
		return false
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		l.errf(n, "YAML anchors and aliases are not supported in playbooks")
		return false
	}
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		l.errf(n, "YAML tag %s is not supported", n.Tag)
		return false
	}
	return true
}

func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	if n == nil {
		return "", false // already reported
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (l *loader) boolean(n *yaml.Node, what string) (bool, bool) {
	if n == nil {
		return false, false // already reported
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		l.errf(n, "%s must be true or false", what)
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		l.errf(n, "%s: %v", what, err)
		return false, false
	}
	return b, true
}

func (l *loader) number(n *yaml.Node, what string) (float64, bool) {
	if n == nil {
		return 0, false // already reported
	}
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		l.errf(n, "%s must be a number", what)
		return 0, false
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		l.errf(n, "%s: %v", what, err)
		return 0, false
	}
	return f, true
}

// strList accepts a scalar or a sequence of scalars.
func (l *loader) strList(n *yaml.Node, what string) ([]string, bool) {
	if n == nil {
		return nil, false // already reported
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}, true
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.errf(n, "%s must be a value or a non-empty list of values", what)
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	good := true
	for _, e := range n.Content {
		if !l.plain(e) {
			good = false
			continue
		}
		if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
			l.errf(e, "%s: list items must be values", what)
			good = false
			continue
		}
		out = append(out, e.Value)
	}
	return out, good
}

func (l *loader) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := l.str(n, what)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		l.errf(n, "%s: %q is not a duration (e.g. 30m, 1h, 24h)", what, s)
		return 0, false
	}
	if d <= 0 || d > maxWindow {
		l.errf(n, "%s: %s is outside (0, %s]", what, d, maxWindow)
		return 0, false
	}
	return d, true
}

func (l *loader) playbook(n *yaml.Node) {
	l.pb, l.step, l.action = "", 0, ""
	// Find the name first so that every problem names the playbook.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
				l.pb = n.Content[i+1].Value
			}
		}
	}
	f, ok := l.fields(n, "playbook", "name", "description", "enabled", "dry_run", "trigger", "steps", "suppression", "blast_radius", "reason")
	if !ok {
		return
	}
	before := len(l.probs)
	p := &Playbook{File: l.fname, Line: n.Line}
	if v, ok := f["name"]; !ok {
		l.errf(n, "name is required")
	} else if s, ok := l.str(v, "name"); ok {
		if len(s) > maxPlaybookLen || !nameRE.MatchString(s) {
			l.errf(v, "name %q must be lower-case letters, digits and dashes, at most %d long", s, maxPlaybookLen)
		} else if prev, dup := l.seen[s]; dup {
			l.errf(v, "playbook name %q is already used at %s:%d", s, prev.File, prev.Line)
		} else {
			l.seen[s] = Problem{File: l.fname, Line: v.Line}
		}
		p.Name = s
	}
	if v, ok := f["description"]; ok {
		p.Description, _ = l.str(v, "description")
	}
	if v, ok := f["enabled"]; !ok {
		l.errf(n, "enabled is required (true or false): a playbook is never live by accident")
	} else {
		p.Enabled, _ = l.boolean(v, "enabled")
	}
	if v, ok := f["dry_run"]; ok {
		p.DryRun, _ = l.boolean(v, "dry_run")
	}
	if v, ok := f["reason"]; ok {
		if s, ok := l.str(v, "reason"); ok {
			t, err := parseTemplate(s)
			if err != nil {
				l.errf(v, "reason: %v", err)
			}
			p.reason = t
		}
	}
	if v, ok := f["trigger"]; !ok {
		l.errf(n, "trigger is required")
	} else {
		p.Trigger = l.trigger(v)
	}
	if v, ok := f["steps"]; !ok {
		l.errf(n, "steps is required")
	} else {
		p.Steps = l.steps(v)
	}
	p.Suppression.Key = "{{ user || user_id }}"
	if v, ok := f["suppression"]; ok {
		p.Suppression = l.suppression(v)
	}
	if p.Suppression.key == nil && p.Suppression.Window > 0 {
		p.Suppression.key, _ = parseTemplate(p.Suppression.Key)
	}
	if v, ok := f["blast_radius"]; ok {
		p.BlastRadius = l.blastRadius(v)
	}
	if len(l.probs) == before {
		l.set.playbooks = append(l.set.playbooks, p)
	}
}

func (l *loader) trigger(n *yaml.Node) Trigger {
	var t Trigger
	f, ok := l.fields(n, "trigger", "source", "kind", "when", "threshold", "sigma")
	if !ok {
		return t
	}
	if v, ok := f["sigma"]; ok {
		t.Sigma = l.sigma(v)
	}
	if v, ok := f["source"]; !ok {
		if len(t.Sigma) == 0 {
			if _, given := f["sigma"]; !given {
				l.errf(n, "trigger.source is required (audit, signin, risk_detection, risky_user or alert)")
			}
		}
	} else if s, ok := l.str(v, "trigger.source"); ok {
		t.Source = event.Source(s)
		if !t.Source.Valid() {
			l.errf(v, "trigger.source %q is not audit, signin, risk_detection, risky_user or alert", s)
		}
		for _, r := range t.Sigma {
			if r.Source != t.Source {
				l.errf(v, "trigger.source %s, but sigma rule %s (%s) is for %s (logsource %s)", s, r.String(), r.File, r.Source, r.mapping.name)
			}
		}
	}
	if t.Source == "" && len(t.Sigma) > 0 {
		t.Source = t.Sigma[0].Source
		for _, r := range t.Sigma[1:] {
			if r.Source != t.Source {
				t.Source = "" // the rules' own sources apply
				break
			}
		}
	}
	if v, ok := f["kind"]; ok {
		t.Kinds, _ = l.strList(v, "trigger.kind")
	}
	if v, ok := f["when"]; ok {
		t.Conditions = l.condList(v, "trigger.when", false, 0)
	}
	if v, ok := f["threshold"]; ok {
		t.Threshold = l.threshold(v, t.Source)
	}
	return t
}

// sigma loads trigger.sigma: a rule file or a directory of rules (or a list of
// either), relative to LoadOptions.BaseDir. Every rule must load: a refused
// rule is a problem naming the rule file and the unsupported feature.
func (l *loader) sigma(n *yaml.Node) []*SigmaRule {
	paths, ok := l.strList(n, "trigger.sigma")
	if !ok {
		return nil
	}
	var out []*SigmaRule
	for _, p := range paths {
		full := p
		if !filepath.IsAbs(full) {
			base := l.opts.BaseDir
			if base == "" {
				base = "."
			}
			full = filepath.Join(base, p)
		}
		fi, err := os.Stat(full)
		if err != nil {
			l.errf(n, "trigger.sigma: %v", err)
			continue
		}
		if fi.IsDir() {
			rules, refused, err := LoadSigmaDir(full)
			if err != nil {
				l.errf(n, "trigger.sigma: %v", err)
			}
			for _, e := range refused {
				l.errf(n, "trigger.sigma: %v", e)
			}
			if len(rules) == 0 && len(refused) == 0 && err == nil {
				l.errf(n, "trigger.sigma: no *.yml rules in %s", full)
			}
			out = append(out, rules...)
			continue
		}
		r, err := LoadSigmaFile(full)
		if err != nil {
			l.errf(n, "trigger.sigma: %v", err)
			continue
		}
		out = append(out, r)
	}
	if len(out) > maxSigmaRules {
		l.errf(n, "trigger.sigma: more than %d rules", maxSigmaRules)
		return nil
	}
	return out
}

// condList accepts one condition mapping or a list of them (all must hold).
func (l *loader) condList(n *yaml.Node, what string, inElem bool, depth int) []Condition {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		if len(n.Content) == 0 {
			l.errf(n, "%s: empty list of conditions", what)
			return nil
		}
		var out []Condition
		for _, e := range n.Content {
			if c := l.cond(e, inElem, depth); c != nil {
				out = append(out, c)
			}
		}
		return out
	}
	if c := l.cond(n, inElem, depth); c != nil {
		return []Condition{c}
	}
	return nil
}

var fieldOps = []string{"equals", "in", "contains", "starts_with", "ends_with", "matches", "cidr", "in_ip_list", "gt", "gte", "lt", "lte", "exists"}

func (l *loader) cond(n *yaml.Node, inElem bool, depth int) Condition {
	if depth > maxCondDepth {
		l.errf(n, "conditions nest deeper than %d", maxCondDepth)
		return nil
	}
	if !l.plain(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		l.errf(n, "a condition must be a mapping with field, not, and, or, any, all or expr")
		return nil
	}
	has := func(k string) bool {
		for i := 0; i < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return true
			}
		}
		return false
	}
	switch {
	case has("field"):
		return l.fieldCond(n, inElem)
	case has("any") || has("all"):
		f, ok := l.fields(n, "condition", "any", "all", "where")
		if !ok {
			return nil
		}
		q := &quantCond{}
		key := "any"
		if _, ok := f["all"]; ok {
			q.all, key = true, "all"
			if _, both := f["any"]; both {
				l.errf(n, "a condition takes any or all, not both")
				return nil
			}
		}
		s, ok := l.str(f[key], key)
		if !ok {
			return nil
		}
		r, err := parseRef(s, inElem)
		if err != nil {
			l.errf(f[key], "%s: %v", key, err)
			return nil
		}
		q.list = r
		w, ok := f["where"]
		if !ok {
			l.errf(n, "%s needs where: the conditions each list item is tested with", key)
			return nil
		}
		q.where = l.condList(w, "where", true, depth+1)
		if len(q.where) == 0 {
			return nil
		}
		return q
	}
	f, ok := l.fields(n, "condition", "not", "and", "or", "expr")
	if !ok {
		return nil
	}
	if len(f) != 1 {
		l.errf(n, "a condition takes exactly one of field, not, and, or, any, all, expr (got %d)", len(f))
		return nil
	}
	var key string
	for k := range f {
		key = k
	}
	switch key {
	case "not":
		cs := l.condList(f["not"], "not", inElem, depth+1)
		if len(cs) == 0 {
			return nil
		}
		if len(cs) == 1 {
			return &notCond{c: cs[0]}
		}
		return &notCond{c: &boolCond{conds: cs}}
	case "and", "or":
		v := f[key]
		if v.Kind != yaml.SequenceNode {
			l.errf(v, "%s takes a list of conditions", key)
			return nil
		}
		cs := l.condList(v, key, inElem, depth+1)
		if len(cs) != len(v.Content) || len(cs) == 0 {
			return nil
		}
		return &boolCond{or: key == "or", conds: cs}
	case "expr":
		if inElem {
			l.errf(n, "expr is not available inside any/all (use it at the top level)")
			return nil
		}
		s, ok := l.str(f["expr"], "expr")
		if !ok {
			return nil
		}
		prog, err := compileExpr(s)
		if err != nil {
			l.errf(f["expr"], "expr: %v", firstLine(err.Error()))
			return nil
		}
		return &exprCond{src: s, prog: prog}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (l *loader) fieldCond(n *yaml.Node, inElem bool) Condition {
	allowed := append([]string{"field", "case_sensitive"}, fieldOps...)
	f, ok := l.fields(n, "condition", allowed...)
	if !ok {
		return nil
	}
	s, ok := l.str(f["field"], "field")
	if !ok {
		return nil
	}
	r, err := parseRef(s, inElem)
	if err != nil {
		l.errf(f["field"], "%v", err)
		return nil
	}
	fc := &fieldCond{field: r}
	if v, ok := f["case_sensitive"]; ok {
		fc.caseSensitive, _ = l.boolean(v, "case_sensitive")
	}
	fold := func(ss []string) []string {
		if fc.caseSensitive {
			return ss
		}
		out := make([]string, len(ss))
		for i, x := range ss {
			out[i] = strings.ToLower(x)
		}
		return out
	}
	good := true
	var desc []string
	for _, name := range fieldOps {
		v, ok := f[name]
		if !ok {
			continue
		}
		op := fieldOp{name: name}
		switch name {
		case "equals":
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				l.errf(v, "equals takes one value (use in for a list)")
				good = false
				continue
			}
			op.values = fold([]string{v.Value})
		case "in", "contains", "starts_with", "ends_with":
			vals, ok := l.strList(v, name)
			if !ok {
				good = false
				continue
			}
			op.values = fold(vals)
		case "matches":
			src, ok := l.str(v, "matches")
			if !ok {
				good = false
				continue
			}
			if !fc.caseSensitive && !strings.HasPrefix(src, "(?i)") {
				src = "(?i)" + src
			}
			re, err := regexp.Compile(src)
			if err != nil {
				l.errf(v, "matches: %v", err)
				good = false
				continue
			}
			op.re = re
		case "cidr":
			vals, ok := l.strList(v, "cidr")
			if !ok {
				good = false
				continue
			}
			for _, c := range vals {
				p, err := netip.ParsePrefix(strings.TrimSpace(c))
				if err != nil {
					a, aerr := netip.ParseAddr(strings.TrimSpace(c))
					if aerr != nil {
						l.errf(v, "cidr: %q is not a CIDR prefix or address", c)
						good = false
						continue
					}
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
				op.nets = append(op.nets, p.Masked())
			}
		case "in_ip_list":
			vals, ok := l.strList(v, "in_ip_list")
			if !ok {
				good = false
				continue
			}
			for _, path := range vals {
				il := l.ipList(v, path)
				if il == nil {
					good = false
					continue
				}
				op.lists = append(op.lists, il)
			}
		case "gt", "gte", "lt", "lte":
			x, ok := l.number(v, name)
			if !ok {
				good = false
				continue
			}
			op.num = x
		case "exists":
			b, ok := l.boolean(v, "exists")
			if !ok {
				good = false
				continue
			}
			op.exists = b
		}
		if name == "equals" || name == "in" {
			op.nums = numbersOf(op.values)
		}
		fc.ops = append(fc.ops, op)
		desc = append(desc, fmt.Sprintf("%s %s %s", s, name, describeValue(v)))
	}
	if len(fc.ops) == 0 && good {
		l.errf(n, "condition on %s has no operator (one of %s)", s, strings.Join(fieldOps, ", "))
		return nil
	}
	if !good {
		return nil
	}
	fc.src = strings.Join(desc, " and ")
	return fc
}

func describeValue(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	var vals []string
	for _, e := range n.Content {
		vals = append(vals, strconv.Quote(e.Value))
	}
	return "[" + strings.Join(vals, ", ") + "]"
}

func (l *loader) ipList(n *yaml.Node, path string) *ipList {
	if path == "" {
		l.errf(n, "in_ip_list: empty path")
		return nil
	}
	full := path
	if !filepath.IsAbs(full) {
		base := l.opts.BaseDir
		if base == "" {
			base = "."
		}
		full = filepath.Join(base, path)
	}
	if il, ok := l.ipLists[full]; ok {
		return il
	}
	il, bad, err := loadIPList(full)
	for _, b := range bad {
		l.errf(n, "in_ip_list: %s", b)
	}
	if err != nil {
		l.errf(n, "in_ip_list: %v", err)
		return nil
	}
	if len(bad) > 0 {
		return nil
	}
	l.ipLists[full] = il
	return il
}

func (l *loader) steps(n *yaml.Node) []Step {
	if !l.plain(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.errf(n, "steps must be a non-empty list")
		return nil
	}
	var out []Step
	for i, sn := range n.Content {
		l.step, l.action = i+1, ""
		if st, ok := l.stepOne(sn); ok {
			out = append(out, st)
		}
	}
	l.step, l.action = 0, ""
	return out
}

func (l *loader) stepOne(n *yaml.Node) (Step, bool) {
	st := Step{Line: n.Line}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "action" {
				l.action = n.Content[i+1].Value
			}
		}
	}
	before := len(l.probs)
	f, ok := l.fields(n, "step", "action", "target", "params", "dry_run", "approval")
	if !ok {
		return st, false
	}
	if v, ok := f["action"]; !ok {
		l.errf(n, "action is required")
	} else if s, ok := l.str(v, "action"); ok {
		st.Action = actions.Name(s)
		if spec, ok := actions.Lookup(st.Action); ok {
			st.targetKind = spec.Target
		} else {
			names := actions.Names()
			list := make([]string, len(names))
			for i, nm := range names {
				list[i] = string(nm)
			}
			l.errf(v, "unknown action %q (catalogue: %s)", s, strings.Join(list, ", "))
		}
	}
	if v, ok := f["dry_run"]; ok {
		st.DryRun, _ = l.boolean(v, "dry_run")
	}
	if v, ok := f["approval"]; ok {
		if s, ok := l.str(v, "approval"); ok {
			if s != ApprovalRequired {
				l.errf(v, "approval must be %q (or left out)", ApprovalRequired)
			}
			st.Approval = s
		}
	}
	st.target = l.target(f["target"], n, st.targetKind)
	if v, ok := f["params"]; ok {
		if v.Kind != yaml.MappingNode {
			l.errf(v, "params must be a mapping")
		} else if p, ok := l.paramValue(v, 0).(map[string]any); ok {
			st.params = p
			// Fixed values are checked against the catalogue's declaration
			// now; a value with a template is checked when the step runs.
			if spec, known := actions.Lookup(st.Action); known {
				for k, x := range p {
					if _, declared := spec.Arg(k); hasTemplate(x) && (declared || k == "undo_of") {
						continue
					}
					if err := spec.CheckParam(k, x); err != nil {
						l.errf(v, "params: %v", err)
					}
				}
			}
		}
	}
	return st, len(l.probs) == before
}

// defaultTargets are used when a step gives no target.
var defaultTargets = map[string]string{
	"user":   "{{ user || user_id }}",
	"ip":     "{{ ip }}",
	"sender": "{{ sender }}",
	"device": "{{ device }}",
	"file":   "{{ sha256 || sha1 }}",
	"url":    "{{ url }}",
	"domain": "{{ domain }}",
}

func (l *loader) target(n, stepNode *yaml.Node, kind string) targetTemplates {
	var t targetTemplates
	src := map[string]*yaml.Node{}
	if n != nil {
		f, ok := l.fields(n, "target", append([]string{"user", "ip", "message_id"}, moreTargets...)...)
		if !ok {
			return t
		}
		src = f
	}
	parse := func(key string, check func(string) bool) *template {
		v, ok := src[key]
		s := ""
		if ok {
			var good bool
			if s, good = l.str(v, "target."+key); !good {
				return nil
			}
		} else if key == kind {
			s = defaultTargets[kind]
			v = stepNode
		}
		if s == "" {
			return nil
		}
		tp, err := parseTemplate(s)
		if err != nil {
			l.errf(v, "target.%s: %v", key, err)
			return nil
		}
		if !isTemplate(s) && check != nil && !check(s) {
			l.errf(v, "target.%s %q is not valid", key, s)
		}
		return tp
	}
	t.user = parse("user", actions.ValidUser)
	t.ip = parse("ip", actions.ValidIP)
	t.messageID = parse("message_id", nil)
	for _, k := range moreTargets {
		check := func(s string) bool { return strings.TrimSpace(s) != "" }
		if k == "sender" {
			check = func(s string) bool { _, _, err := actions.ParseSender(s); return err == nil }
		}
		if tp := parse(k, check); tp != nil {
			if t.more == nil {
				t.more = map[string]*template{}
			}
			t.more[k] = tp
		}
	}
	if kind == "message" && t.messageID == nil {
		if _, given := src["message_id"]; !given {
			l.errf(stepNode, "this action needs target.message_id")
		}
	}
	return t
}

// paramValue turns a params node into literals and templates.
func (l *loader) paramValue(n *yaml.Node, depth int) any {
	if depth > maxCondDepth {
		l.errf(n, "params nest deeper than %d", maxCondDepth)
		return nil
	}
	if !l.plain(n) {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !l.plain(k) {
				continue
			}
			if k.Kind != yaml.ScalarNode || k.Value == "" {
				l.errf(k, "params: keys must be non-empty strings")
				continue
			}
			if _, dup := m[k.Value]; dup {
				l.errf(k, "params: %q given twice", k.Value)
				continue
			}
			m[k.Value] = l.paramValue(n.Content[i+1], depth+1)
		}
		return m
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			out = append(out, l.paramValue(e, depth+1))
		}
		return out
	case yaml.ScalarNode:
		if n.Tag == "!!str" && isTemplate(n.Value) {
			t, err := parseTemplate(n.Value)
			if err != nil {
				l.errf(n, "params: %v", err)
				return nil
			}
			return t
		}
		var v any
		if err := n.Decode(&v); err != nil {
			l.errf(n, "params: %v", err)
			return nil
		}
		switch x := v.(type) {
		case string, bool, int, int64, uint64, float64, nil:
			return x
		default:
			return n.Value
		}
	}
	l.errf(n, "params: unsupported value")
	return nil
}

// hasTemplate reports whether a step parameter's value holds a template
// anywhere.
func hasTemplate(v any) bool {
	switch x := v.(type) {
	case *template:
		return true
	case []any:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	}
	return false
}

func (l *loader) suppression(n *yaml.Node) Suppression {
	s := Suppression{Key: "{{ user || user_id }}"}
	f, ok := l.fields(n, "suppression", "window", "key", "scope")
	if !ok {
		return s
	}
	if v, ok := f["window"]; !ok {
		l.errf(n, "suppression.window is required")
	} else {
		s.Window, _ = l.duration(v, "suppression.window")
	}
	if v, ok := f["key"]; ok {
		if k, ok := l.str(v, "suppression.key"); ok {
			s.Key = k
			if !isTemplate(k) {
				l.errf(v, "suppression.key must use the event, e.g. \"{{ user || user_id }}\"")
			}
		}
	}
	if v, ok := f["scope"]; ok {
		if sc, ok := l.str(v, "suppression.scope"); ok {
			if !validScope(sc) {
				l.errf(v, "suppression.scope %q: want letters, digits, '-' and '_'", sc)
			}
			s.Scope = sc
		}
	}
	t, err := parseTemplate(s.Key)
	if err != nil {
		l.errf(f["key"], "suppression.key: %v", err)
	}
	s.key = t
	return s
}

func (l *loader) blastRadius(n *yaml.Node) BlastRadius {
	var b BlastRadius
	f, ok := l.fields(n, "blast_radius", "max", "window")
	if !ok {
		return b
	}
	if v, ok := f["max"]; !ok {
		l.errf(n, "blast_radius.max is required")
	} else if x, ok := l.number(v, "blast_radius.max"); ok {
		if x < 1 || x > 1e6 || x != float64(int(x)) {
			l.errf(v, "blast_radius.max must be a whole number from 1 to 1000000")
		} else {
			b.Max = int(x)
		}
	}
	if v, ok := f["window"]; !ok {
		l.errf(n, "blast_radius.window is required")
	} else {
		b.Window, _ = l.duration(v, "blast_radius.window")
	}
	return b
}

// validScope accepts a suppression scope name: 1–64 of [A-Za-z0-9_-].
func validScope(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
