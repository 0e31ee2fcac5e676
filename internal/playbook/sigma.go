package playbook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/event"
)

// Bounds on Sigma rules, so that loading and matching stay bounded on any input.
const (
	maxSigmaSelections = 256
	maxSigmaValues     = 4096
	maxSigmaCondLen    = 4096
	maxSigmaCondDepth  = 64
	maxSigmaRules      = 10000
)

// SigmaRule is one compiled SigmaHQ detection rule, mapped onto Responder's
// sources. It is immutable once loaded.
type SigmaRule struct {
	ID, Title, Status, Level, Author string
	Description                      string
	Tags, References, Fields         []string
	FalsePositives                   []string
	// Product, Service and Category are the rule's logsource.
	Product, Service, Category string
	// Source is the event source the logsource maps onto.
	Source event.Source
	// File and Line locate the rule.
	File string
	Line int

	cond    sigmaNode
	mapping *sigmaMapping
	reason  string // " matched Sigma rule …", for match reasons
}

// String names the rule for match reasons: title and id.
func (r *SigmaRule) String() string {
	if r.ID != "" {
		return fmt.Sprintf("%q (%s)", r.Title, r.ID)
	}
	return strconv.Quote(r.Title)
}

// SigmaError says why a Sigma rule was refused. Feature, when set, is the
// exact unsupported feature ("modifier base64offset", "aggregation | count()",
// "near", "timeframe", "field Foo", …); otherwise the rule is malformed.
type SigmaError struct {
	File    string
	Line    int
	Feature string
	Msg     string
}

func (e *SigmaError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Feature != "" {
		return fmt.Sprintf("%s: sigma rule: unsupported %s: %s", loc, e.Feature, e.Msg)
	}
	return fmt.Sprintf("%s: sigma rule: %s", loc, e.Msg)
}

// ErrSigmaUnsupported matches (errors.Is) every SigmaError that names an
// unsupported feature.
var ErrSigmaUnsupported = errors.New("unsupported sigma feature")

// Is reports ErrSigmaUnsupported for refusals of unsupported features.
func (e *SigmaError) Is(target error) bool {
	return target == ErrSigmaUnsupported && e.Feature != ""
}

// LoadSigmaFile reads and compiles one Sigma rule file.
func LoadSigmaFile(path string) (*SigmaRule, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, &SigmaError{File: path, Msg: err.Error()}
	}
	return ParseSigma(path, data)
}

// LoadSigmaDir compiles every *.yml and *.yaml file directly in dir, sorted by
// name. Rules that are refused are returned with their errors; the others load.
func LoadSigmaDir(dir string) ([]*SigmaRule, []error, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("sigma: %w", err)
	}
	var rules []*SigmaRule
	var refused []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml")) {
			continue
		}
		if len(rules)+len(refused) >= maxSigmaRules {
			return rules, refused, fmt.Errorf("sigma: %s: more than %d rules", dir, maxSigmaRules)
		}
		r, err := LoadSigmaFile(filepath.Join(dir, name))
		if err != nil {
			refused = append(refused, err)
			continue
		}
		rules = append(rules, r)
	}
	return rules, refused, nil
}

// ParseSigma compiles one Sigma rule; name is used in errors.
func ParseSigma(name string, data []byte) (rule *SigmaRule, err error) {
	if len(data) > maxFileBytes {
		return nil, &SigmaError{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &SigmaError{File: name, Msg: "empty file"}
		}
		return nil, &SigmaError{File: name, Line: yamlErrLine(err), Msg: "YAML: " + err.Error()}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, &SigmaError{File: name, Line: more.Line, Feature: "rule collection (several YAML documents)", Msg: "one rule per file"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &SigmaError{File: name, Msg: "not a YAML mapping"}
	}
	c := &sigmaCompiler{file: name}
	r := c.rule(doc.Content[0])
	if c.err != nil {
		return nil, c.err
	}
	return r, nil
}

// sigmaCompiler keeps the first problem found.
type sigmaCompiler struct {
	file string
	err  *SigmaError
}

func (c *sigmaCompiler) fail(n *yaml.Node, feature, format string, args ...any) {
	if c.err != nil {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	c.err = &SigmaError{File: c.file, Line: line, Feature: feature, Msg: fmt.Sprintf(format, args...)}
}

// plainNode refuses anchors, aliases and custom tags (as in playbooks).
func (c *sigmaCompiler) plainNode(n *yaml.Node) bool {
	if n == nil {
		return false
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		c.fail(n, "YAML anchors and aliases", "not accepted in rules")
		return false
	}
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		c.fail(n, "YAML tag "+n.Tag, "not accepted in rules")
		return false
	}
	return true
}

// sigmaMeta are the rule attributes Responder reads or knows to ignore.
var sigmaMeta = map[string]bool{
	"title": true, "id": true, "status": true, "description": true, "author": true,
	"date": true, "modified": true, "references": true, "tags": true, "level": true,
	"logsource": true, "detection": true, "fields": true, "falsepositives": true,
	"license": true, "related": true, "name": true, "taxonomy": true, "scope": true,
}

func (c *sigmaCompiler) rule(n *yaml.Node) *SigmaRule {
	if !c.plainNode(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		c.fail(n, "", "a rule must be a YAML mapping")
		return nil
	}
	r := &SigmaRule{File: c.file, Line: n.Line}
	var logsource, detection *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !c.plainNode(k) || !c.plainNode(v) {
			return nil
		}
		if seen[k.Value] {
			c.fail(k, "", "attribute %q given twice", k.Value)
			return nil
		}
		seen[k.Value] = true
		switch k.Value {
		case "correlation":
			c.fail(k, "correlation rule", "Sigma correlation rules (event_count, value_count, temporal) are not supported; use a playbook threshold")
			return nil
		case "action":
			c.fail(k, "rule collection (action: "+v.Value+")", "one rule per file")
			return nil
		case "title":
			r.Title = c.scalar(v, "title")
		case "id":
			r.ID = c.scalar(v, "id")
		case "status":
			r.Status = c.scalar(v, "status")
		case "level":
			r.Level = c.scalar(v, "level")
		case "author":
			r.Author = c.scalar(v, "author")
		case "description":
			r.Description = c.scalar(v, "description")
		case "tags":
			r.Tags = c.scalarList(v, "tags")
		case "references":
			r.References = c.scalarList(v, "references")
		case "fields":
			r.Fields = c.scalarList(v, "fields")
		case "falsepositives":
			r.FalsePositives = c.scalarList(v, "falsepositives")
		case "logsource":
			logsource = v
		case "detection":
			detection = v
		default:
			// Sigma allows custom attributes; they do not change detection.
			_ = sigmaMeta[k.Value]
		}
	}
	if c.err != nil {
		return nil
	}
	if r.Title == "" {
		c.fail(n, "", "title is required")
		return nil
	}
	if logsource == nil {
		c.fail(n, "", "logsource is required")
		return nil
	}
	if detection == nil {
		c.fail(n, "", "detection is required")
		return nil
	}
	c.logsource(r, logsource)
	if c.err != nil {
		return nil
	}
	r.cond = c.detection(r, detection)
	if c.err != nil {
		return nil
	}
	r.reason = " matched Sigma rule " + r.String()
	if r.Author != "" {
		r.reason += " by " + r.Author
	}
	if r.mapping.guard != nil {
		r.cond = &sigmaAnd{kids: []sigmaNode{r.cond, &sigmaGuard{r.mapping.guard()}}}
	}
	return r
}

func (c *sigmaCompiler) scalar(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode {
		c.fail(n, "", "%s must be a string", what)
		return ""
	}
	return n.Value
}

func (c *sigmaCompiler) scalarList(n *yaml.Node, what string) []string {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		c.fail(n, "", "%s must be a list", what)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if !c.plainNode(e) {
			return nil
		}
		if e.Kind != yaml.ScalarNode {
			c.fail(e, "", "%s: items must be strings", what)
			return nil
		}
		out = append(out, e.Value)
	}
	return out
}

func (c *sigmaCompiler) logsource(r *SigmaRule, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.fail(n, "", "logsource must be a mapping")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !c.plainNode(k) || !c.plainNode(v) {
			return
		}
		switch k.Value {
		case "product":
			r.Product = c.scalar(v, "logsource.product")
		case "service":
			r.Service = c.scalar(v, "logsource.service")
		case "category":
			r.Category = c.scalar(v, "logsource.category")
		case "definition":
			// free text for humans
		default:
			c.fail(k, "logsource."+k.Value, "only product, service, category and definition are understood")
			return
		}
	}
	m := lookupSigmaMapping(r.Product, r.Service, r.Category)
	if m == nil {
		c.fail(n, fmt.Sprintf("logsource product=%s service=%s category=%s", r.Product, r.Service, r.Category),
			"not mapped onto Responder's sources (mapped: %s)", strings.Join(sigmaMappingNames(), ", "))
		return
	}
	r.mapping, r.Source = m, m.source
}

// detection compiles the selections and the condition.
func (c *sigmaCompiler) detection(r *SigmaRule, n *yaml.Node) sigmaNode {
	if n.Kind != yaml.MappingNode {
		c.fail(n, "", "detection must be a mapping")
		return nil
	}
	sels := map[string]sigmaNode{}
	var names []string
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !c.plainNode(k) || !c.plainNode(v) {
			return nil
		}
		switch k.Value {
		case "condition":
			condNode = v
			continue
		case "timeframe":
			c.fail(k, "timeframe", "time windows belong to a playbook threshold, not to the rule")
			return nil
		}
		if _, dup := sels[k.Value]; dup {
			c.fail(k, "", "selection %q given twice", k.Value)
			return nil
		}
		if len(sels) >= maxSigmaSelections {
			c.fail(k, "", "more than %d selections", maxSigmaSelections)
			return nil
		}
		s := c.selection(r, k.Value, v)
		if c.err != nil {
			return nil
		}
		sels[k.Value] = s
		names = append(names, k.Value)
	}
	if condNode == nil {
		c.fail(n, "", "detection.condition is required")
		return nil
	}
	var conds []string
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []string{condNode.Value}
	case yaml.SequenceNode:
		for _, e := range condNode.Content {
			if !c.plainNode(e) {
				return nil
			}
			if e.Kind != yaml.ScalarNode {
				c.fail(e, "", "condition list items must be strings")
				return nil
			}
			conds = append(conds, e.Value)
		}
	default:
		c.fail(condNode, "", "condition must be a string or a list of strings")
		return nil
	}
	if len(conds) == 0 {
		c.fail(condNode, "", "empty condition")
		return nil
	}
	sort.Strings(names)
	var alts []sigmaNode
	for _, s := range conds {
		node, err := parseSigmaCondition(s, sels, names)
		if err != nil {
			var se *SigmaError
			if errors.As(err, &se) {
				se.File, se.Line = c.file, condNode.Line
				c.err = se
			} else {
				c.fail(condNode, "", "condition %q: %v", s, err)
			}
			return nil
		}
		alts = append(alts, node)
	}
	if len(alts) == 1 {
		return alts[0]
	}
	return &sigmaOr{kids: alts}
}

// selection compiles one search identifier: a mapping (all fields must hold),
// or a list of mappings (any must hold). A list of plain values is a keyword
// (full-text) search, which Responder does not run.
func (c *sigmaCompiler) selection(r *SigmaRule, name string, n *yaml.Node) sigmaNode {
	switch n.Kind {
	case yaml.MappingNode:
		return c.selectionMap(r, name, n)
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			c.fail(n, "", "selection %q is an empty list", name)
			return nil
		}
		var kids []sigmaNode
		for _, e := range n.Content {
			if !c.plainNode(e) {
				return nil
			}
			if e.Kind != yaml.MappingNode {
				c.fail(e, "keyword search", "selection %q lists plain values (full-text keywords); name the field they are in", name)
				return nil
			}
			kids = append(kids, c.selectionMap(r, name, e))
			if c.err != nil {
				return nil
			}
		}
		if len(kids) == 1 {
			return kids[0]
		}
		return &sigmaOr{kids: kids}
	case yaml.ScalarNode:
		c.fail(n, "keyword search", "selection %q is a plain value (full-text keyword); name the field it is in", name)
		return nil
	}
	c.fail(n, "", "selection %q must be a mapping or a list of mappings", name)
	return nil
}

func (c *sigmaCompiler) selectionMap(r *SigmaRule, name string, n *yaml.Node) sigmaNode {
	and := &sigmaAnd{}
	nvals := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !c.plainNode(k) || !c.plainNode(v) {
			return nil
		}
		if k.Kind != yaml.ScalarNode {
			c.fail(k, "", "selection %q: keys must be field names", name)
			return nil
		}
		fm := c.fieldMatch(r, k, v)
		if c.err != nil {
			return nil
		}
		nvals += len(fm.values)
		if nvals > maxSigmaValues {
			c.fail(v, "", "selection %q has more than %d values", name, maxSigmaValues)
			return nil
		}
		and.kids = append(and.kids, fm)
	}
	if len(and.kids) == 0 {
		c.fail(n, "", "selection %q is empty", name)
		return nil
	}
	if len(and.kids) == 1 {
		return and.kids[0]
	}
	return and
}

// modifiers Responder supports; others are refused by name.
var sigmaModifiers = map[string]bool{
	"contains": true, "startswith": true, "endswith": true, "all": true,
	"re": true, "i": true, "m": true, "s": true, "cidr": true, "exists": true,
	"cased": true, "gt": true, "gte": true, "lt": true, "lte": true,
}

func (c *sigmaCompiler) fieldMatch(r *SigmaRule, k, v *yaml.Node) *sigmaFieldMatch {
	parts := strings.Split(k.Value, "|")
	field := parts[0]
	mods := parts[1:]
	fm := &sigmaFieldMatch{src: k.Value}
	var op string // contains | startswith | endswith | re | cidr | exists | gt…
	var reFlags string
	for _, m := range mods {
		if !sigmaModifiers[m] {
			c.fail(k, "modifier "+m, "field %q: Responder supports contains, startswith, endswith, all, re (with i, m, s), cidr, exists, cased, gt, gte, lt, lte", field)
			return nil
		}
		switch m {
		case "all":
			fm.all = true
		case "cased":
			fm.cased = true
		case "i", "m", "s":
			if op != "re" {
				c.fail(k, "modifier "+m, "field %q: %s only qualifies re", field, m)
				return nil
			}
			reFlags += m
		default:
			if op != "" {
				c.fail(k, "modifier "+op+"|"+m, "field %q: one value modifier per field", field)
				return nil
			}
			op = m
		}
	}
	if field == "" {
		c.fail(k, "keyword search", "a field name is required (got %q)", k.Value)
		return nil
	}
	sf, ok := r.mapping.field(field)
	if !ok {
		c.fail(k, "field "+field, "no mapping from logsource %s onto Responder's %s records", r.mapping.name, r.mapping.source)
		return nil
	}
	fm.field = sf
	var vals []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		vals = []*yaml.Node{v}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			c.fail(v, "", "field %q: empty list of values", field)
			return nil
		}
		for _, e := range v.Content {
			if !c.plainNode(e) {
				return nil
			}
			if e.Kind != yaml.ScalarNode {
				c.fail(e, "", "field %q: values must be plain values", field)
				return nil
			}
			vals = append(vals, e)
		}
	default:
		c.fail(v, "", "field %q: a value or a list of values", field)
		return nil
	}
	if op == "exists" {
		if len(vals) != 1 || vals[0].Tag != "!!bool" {
			c.fail(v, "", "field %q: exists takes true or false", field)
			return nil
		}
		fm.values = []sigmaValue{{kind: svExists, exists: vals[0].Value == "true"}}
		return fm
	}
	for _, e := range vals {
		sv, err := compileSigmaValue(e, op, reFlags, fm.cased)
		if err != nil {
			c.fail(e, "", "field %q: %v", field, err)
			return nil
		}
		fm.values = append(fm.values, sv)
	}
	return fm
}

// value kinds
const (
	svEq = iota
	svContains
	svPrefix
	svSuffix
	svGlob
	svRe
	svCIDR
	svNull
	svExists
	svNum
)

// sigmaValue is one compiled value of a field.
type sigmaValue struct {
	kind   int
	s      string // the literal (lower-cased unless cased)
	glob   []globTok
	re     *regexp.Regexp
	nets   []netip.Prefix
	num    float64
	cmp    string // gt gte lt lte
	exists bool
	cased  bool
}

type globTok struct {
	star, any bool // '*' or '?'
	lit       string
}

func compileSigmaValue(n *yaml.Node, op, reFlags string, cased bool) (sigmaValue, error) {
	sv := sigmaValue{cased: cased}
	if n.Tag == "!!null" {
		if op != "" {
			return sv, fmt.Errorf("null with modifier %s", op)
		}
		sv.kind = svNull
		return sv, nil
	}
	raw := n.Value
	switch op {
	case "re":
		src := raw
		if reFlags != "" {
			src = "(?" + reFlags + ")" + src
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return sv, fmt.Errorf("regular expression %q (Go RE2 syntax: no look-around or back-references): %w", raw, err)
		}
		sv.kind, sv.re = svRe, re
		return sv, nil
	case "cidr":
		p, err := netip.ParsePrefix(strings.TrimSpace(raw))
		if err != nil {
			return sv, fmt.Errorf("cidr %q: %w", raw, err)
		}
		sv.kind, sv.nets = svCIDR, []netip.Prefix{p.Masked()}
		return sv, nil
	case "gt", "gte", "lt", "lte":
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return sv, fmt.Errorf("%s takes a number, got %q", op, raw)
		}
		sv.kind, sv.num, sv.cmp = svNum, f, op
		return sv, nil
	}
	toks := parseGlob(raw)
	switch op {
	case "contains":
		toks = append(append([]globTok{{star: true}}, toks...), globTok{star: true})
	case "startswith":
		toks = append(toks, globTok{star: true})
	case "endswith":
		toks = append([]globTok{{star: true}}, toks...)
	}
	toks = simplifyGlob(toks)
	if !cased {
		for i := range toks {
			toks[i].lit = strings.ToLower(toks[i].lit)
		}
	}
	// The common shapes get a direct string operation.
	lits, lead, trail, simple := globShape(toks)
	switch {
	case simple && !lead && !trail:
		sv.kind, sv.s = svEq, lits
	case simple && lead && trail:
		sv.kind, sv.s = svContains, lits
	case simple && trail:
		sv.kind, sv.s = svPrefix, lits
	case simple && lead:
		sv.kind, sv.s = svSuffix, lits
	default:
		sv.kind, sv.glob = svGlob, toks
	}
	return sv, nil
}

// parseGlob splits a Sigma value into literals and wildcards: * any run, ? one
// character; a backslash escapes *, ? and itself (elsewhere it is literal).
func parseGlob(s string) []globTok {
	var out []globTok
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, globTok{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			lit.WriteByte(s[i+1])
			i++
		case ch == '*':
			flush()
			out = append(out, globTok{star: true})
		case ch == '?':
			flush()
			out = append(out, globTok{any: true})
		default:
			lit.WriteByte(ch)
		}
	}
	flush()
	return out
}

// simplifyGlob merges adjacent stars and adjacent literals.
func simplifyGlob(toks []globTok) []globTok {
	var out []globTok
	for _, t := range toks {
		if len(out) > 0 {
			last := &out[len(out)-1]
			if t.star && last.star {
				continue
			}
			if !t.star && !t.any && !last.star && !last.any {
				last.lit += t.lit
				continue
			}
		}
		out = append(out, t)
	}
	return out
}

// globShape recognises [*]literal[*].
func globShape(toks []globTok) (lit string, lead, trail, simple bool) {
	i, j := 0, len(toks)
	if i < j && toks[i].star {
		lead = true
		i++
	}
	if j > i && toks[j-1].star {
		trail = true
		j--
	}
	switch j - i {
	case 0:
		return "", lead, trail, true
	case 1:
		if toks[i].star || toks[i].any {
			return "", false, false, false
		}
		return toks[i].lit, lead, trail, true
	}
	return "", false, false, false
}
