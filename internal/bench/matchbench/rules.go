package matchbench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/playbook"
)

// A rule set of the benchmark: the public Sigma rules, then variants of them
// with other values, until there are as many distinct rules as asked. Two
// rules are distinct when their logsource and detection differ; a variant
// keeps a rule's shape (fields, modifiers, condition) and changes its
// values: to another value Microsoft uses for that field where the field's
// vocabulary is listed below, else to a value of its own. The variants make
// the matcher do what a deployment with many rules makes it do: many
// different values to compare, many rules filed under different keys.

// otherValues are real values of the fields the public rules test, from
// Microsoft's documentation, so that variants meet real events too.
var otherValues = map[string][]string{
	// riskDetection riskEventType:
	// https://learn.microsoft.com/en-us/graph/api/resources/riskdetection
	"riskeventtype": {"adminConfirmedUserCompromised", "anomalousToken", "anonymizedIPAddress", "generic", "impossibleTravel",
		"investigationsThreatIntelligence", "suspiciousSendingPatterns", "leakedCredentials", "maliciousIPAddress",
		"malwareInfectedIPAddress", "mcasSuspiciousInboxManipulationRules", "newCountry", "passwordSpray", "riskyIPAddress",
		"suspiciousAPITraffic", "suspiciousBrowser", "suspiciousInboxForwarding", "suspiciousIPAddress", "tokenIssuerAnomaly",
		"unfamiliarFeatures", "unlikelyTravel", "nationStateIP", "userReportedSuspiciousActivity", "attemptedPrtAccess"},
	// Exchange, SharePoint and Entra audit operations:
	// https://learn.microsoft.com/en-us/purview/audit-log-activities
	"operation": {"New-InboxRule", "Set-InboxRule", "Remove-InboxRule", "Set-Mailbox", "Add-MailboxPermission", "UpdateInboxRules",
		"MailItemsAccessed", "Send", "SendAs", "SendOnBehalf", "HardDelete", "SoftDelete", "MoveToDeletedItems", "FileDeleted",
		"FileAccessed", "FileDownloaded", "FileModified", "UserLoggedIn", "UserLoginFailed", "Add member to role",
		"Consent to application", "Add service principal", "Update user", "Reset user password"},
	// Sign-in error codes: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
	"resulttype": {"0", "50053", "50055", "50057", "50074", "50076", "50079", "50126", "500121", "53003", "530032"},
	// signIn authenticationRequirement, riskState:
	// https://learn.microsoft.com/en-us/graph/api/resources/signin
	"authenticationrequirement": {"singleFactorAuthentication", "multiFactorAuthentication"},
	"riskstate":                 {"none", "confirmedSafe", "remediated", "dismissed", "atRisk", "confirmedCompromised"},
	// Defender for Cloud Apps alert names in the Management Activity API.
	"eventname": {"Activity from infrequent country", "Impossible travel activity", "Activity from anonymous IP addresses",
		"Activity from suspicious IP addresses", "Suspicious inbox forwarding", "Suspicious inbox manipulation rule",
		"Unusual file deletion activities", "Mass download by a single user", "Multiple failed login attempts"},
}

// Rule is one rule of a generated set.
type Rule struct {
	// Name is the rule's file name; Base the public rule it derives from.
	Name, Base string
	// Variant is 0 for a public rule.
	Variant int
	Data    []byte
	// Key identifies the rule's detection: rules with equal keys are the same.
	Key string
}

// DistinctRules returns n distinct rules: the rules of dir (sorted by file
// name) that Responder loads, then variants of them in turn.
func DistinctRules(dir string, n int) ([]Rule, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	type baseRule struct {
		name string
		doc  *yaml.Node
	}
	var bases []baseRule
	var out []Rule
	seen := map[string]bool{}
	for _, path := range names {
		data, err := readBounded(path)
		if err != nil {
			return nil, err
		}
		if _, err := playbook.ParseSigma(path, data); err != nil {
			continue
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			continue
		}
		key, err := detectionKey(&doc)
		if err != nil {
			return nil, fmt.Errorf("matchbench: %s: %w", path, err)
		}
		bases = append(bases, baseRule{filepath.Base(path), &doc})
		if !seen[key] && len(out) < n {
			seen[key] = true
			out = append(out, Rule{Name: filepath.Base(path), Base: filepath.Base(path), Data: data, Key: key})
		}
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("matchbench: no Sigma rule loads from %s", dir)
	}
	for k := 1; len(out) < n; k++ {
		added := false
		for _, b := range bases {
			if len(out) >= n {
				break
			}
			doc := variant(b.doc, k)
			data, err := yaml.Marshal(doc)
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("%s-v%d.yml", strings.TrimSuffix(b.name, ".yml"), k)
			if _, err := playbook.ParseSigma(name, data); err != nil {
				continue
			}
			key, err := detectionKey(doc)
			if err != nil || seen[key] {
				continue
			}
			seen[key] = true
			added = true
			out = append(out, Rule{Name: name, Base: b.name, Variant: k, Data: data, Key: key})
		}
		if !added && k > 64 {
			return out, fmt.Errorf("matchbench: only %d distinct rules can be made from %s", len(out), dir)
		}
	}
	return out, nil
}

// detectionKey is a digest of the rule's logsource and detection.
func detectionKey(doc *yaml.Node) (string, error) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	h := sha256.New()
	for _, k := range []string{"logsource", "detection"} {
		v := mapValue(root, k)
		if v == nil {
			return "", fmt.Errorf("no %s", k)
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			return "", err
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// variant returns a copy of the rule document with its title, id and
// detection values changed (k >= 1).
func variant(doc *yaml.Node, k int) *yaml.Node {
	cp := deepCopy(doc)
	root := cp
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if t := mapValue(root, "title"); t != nil {
		t.Value += " (variant " + strconv.Itoa(k) + ")"
	}
	if id := mapValue(root, "id"); id != nil {
		sum := sha256.Sum256([]byte(id.Value + "/" + strconv.Itoa(k)))
		h := hex.EncodeToString(sum[:16])
		id.Value = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	det := mapValue(root, "detection")
	if det == nil || det.Kind != yaml.MappingNode {
		return cp
	}
	for i := 0; i+1 < len(det.Content); i += 2 {
		if det.Content[i].Value == "condition" || det.Content[i].Value == "timeframe" {
			continue
		}
		varySelection(det.Content[i+1], k)
	}
	return cp
}

// varySelection changes the values of a selection (a mapping, or a list of
// mappings).
func varySelection(n *yaml.Node, k int) {
	switch n.Kind {
	case yaml.SequenceNode:
		for _, e := range n.Content {
			varySelection(e, k)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			field, mods, _ := strings.Cut(n.Content[i].Value, "|")
			v := n.Content[i+1]
			if v.Kind == yaml.SequenceNode {
				for j, e := range v.Content {
					varyValue(e, field, mods, k, j)
				}
			} else {
				varyValue(v, field, mods, k, 0)
			}
		}
	}
}

// varyValue changes one value: nulls, booleans and the modifiers whose values
// are not text (exists, cidr, comparisons, re) keep theirs.
func varyValue(v *yaml.Node, field, mods string, k, pos int) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Tag == "!!bool" {
		return
	}
	for _, m := range strings.Split(mods, "|") {
		switch m {
		case "exists", "cidr", "gt", "gte", "lt", "lte", "re":
			return
		}
	}
	if pool := otherValues[strings.ToLower(field)]; len(pool) > 0 {
		start := 0
		for i, p := range pool {
			if strings.EqualFold(p, v.Value) {
				start = i
			}
		}
		next := pool[(start+k*(pos+1))%len(pool)]
		if strings.EqualFold(next, v.Value) {
			next = pool[(start+k*(pos+1)+1)%len(pool)]
		}
		v.Value, v.Tag, v.Style = next, "!!str", yaml.SingleQuotedStyle
		return
	}
	if v.Tag == "!!int" || v.Tag == "!!float" {
		v.Value = strconv.Itoa(1000*k + pos)
		return
	}
	v.Value = strings.TrimRight(v.Value, "*") + " " + strconv.Itoa(k)
	v.Style = yaml.SingleQuotedStyle
}

func deepCopy(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	cp := *n
	cp.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		cp.Content[i] = deepCopy(c)
	}
	return &cp
}

// WriteRuleSet writes the rules under dir/rules and one playbook per rule in
// dir (name sigma-NNN, the rule as trigger, a dry-run revoke_sessions of the
// event's user as step), and copies the playbooks of shippedDir (and its
// lists) beside them when shippedDir is not "".
func WriteRuleSet(dir string, rules []Rule, shippedDir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		return err
	}
	for i, r := range rules {
		file := fmt.Sprintf("%03d-%s", i, r.Name)
		if err := os.WriteFile(filepath.Join(dir, "rules", file), r.Data, 0o644); err != nil {
			return err
		}
		pb := fmt.Sprintf("name: sigma-%03d\nenabled: true\ntrigger:\n  sigma: rules/%s\nsteps:\n  - action: revoke_sessions\n    dry_run: true\n", i, file)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("sigma-%03d.yaml", i)), []byte(pb), 0o644); err != nil {
			return err
		}
	}
	if shippedDir == "" {
		return nil
	}
	return filepath.WalkDir(shippedDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(shippedDir, path)
		if err != nil {
			return err
		}
		top := !strings.Contains(filepath.ToSlash(rel), "/")
		switch {
		case d.IsDir():
			if rel == "." || rel == "lists" {
				return os.MkdirAll(filepath.Join(dir, rel), 0o755)
			}
			return filepath.SkipDir
		case top && (strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml")),
			strings.HasPrefix(filepath.ToSlash(rel), "lists/"):
			data, err := readBounded(path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, rel), bytes.Clone(data), 0o644)
		}
		return nil
	})
}
