package playbook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

const sigmaRecords = "testdata/sigma"

// sharedRefused lists the shared rules Responder refuses, with the feature
// named. Every other shared rule must load and fire on its record.
var sharedRefused = map[string]string{}

func sigmaEnv(t *testing.T, path string) *event.Envelope {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.Normalize("", b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &env
}

// TestSharedSigmaRules: every rule in the shared fixtures either loads and
// fires (through a playbook) on the record written for it and not on a benign
// one, or is refused with the expected feature named.
func TestSharedSigmaRules(t *testing.T) {
	dir := filepath.Join(fixtures(t), "sigma")
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rules in %s: %v", dir, err)
	}
	sort.Strings(files)
	abs, _ := filepath.Abs(dir)
	var table []string
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".yml")
		r, err := LoadSigmaFile(f)
		if want, refused := sharedRefused[base]; refused {
			var se *SigmaError
			if !errors.As(err, &se) || se.Feature != want {
				t.Errorf("%s: want refusal of %q, got %v", base, want, err)
			}
			table = append(table, fmt.Sprintf("%-70s refused: %v", base, err))
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", base, err)
			table = append(table, fmt.Sprintf("%-70s ERROR %v", base, err))
			continue
		}
		src := fmt.Sprintf("name: s\nenabled: true\ntrigger: {sigma: %q}\nsteps: [{action: revoke_sessions, target: {user: 'x@contoso.com'}}]\n", filepath.Join(abs, filepath.Base(f)))
		set, err := Load("s.yaml", []byte(src), LoadOptions{})
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		fires := sigmaEnv(t, filepath.Join(sigmaRecords, base+".fires.json"))
		benign := sigmaEnv(t, filepath.Join(sigmaRecords, base+".benign.json"))
		ms, err := set.Match(fires)
		if err != nil || len(ms) != 1 || ms[0].Sigma == nil || ms[0].Sigma.ID != r.ID {
			t.Errorf("%s: does not fire on its record: %v %v", base, names(ms), err)
		}
		if ms, _ := set.Match(benign); len(ms) != 0 {
			t.Errorf("%s: fires on the benign record", base)
		}
		if !r.matchRef(fires) || r.matchRef(benign) {
			t.Errorf("%s: the rule alone disagrees with Set.Match", base)
		}
		table = append(table, fmt.Sprintf("%-70s loads, fires (%s/%s -> %s)", base, r.Product, r.Service, r.Source))
	}
	t.Logf("Sigma support (%d rules):\n%s", len(files), strings.Join(table, "\n"))
}

// TestSigmaDirTrigger: one playbook over the whole directory fires on each
// rule's record, naming the rule.
func TestSigmaDirTrigger(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join(fixtures(t), "sigma"))
	src := fmt.Sprintf("name: all-sigma\nenabled: true\ntrigger: {sigma: %q}\nsteps: [{action: revoke_sessions, target: {user: \"{{ user || 'soc@contoso.com' }}\"}}]\n", dir)
	set, err := Load("s.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := filepath.Glob(filepath.Join(sigmaRecords, "*.fires.json"))
	for _, f := range recs {
		ms, err := set.Match(sigmaEnv(t, f))
		if err != nil || len(ms) != 1 {
			t.Errorf("%s: %v %v", f, names(ms), err)
			continue
		}
		if !strings.Contains(ms[0].Reason, "Sigma rule") || len(ms[0].Steps) != 1 {
			t.Errorf("%s: reason %q", f, ms[0].Reason)
		}
	}
}

// TestSigmaRefusals: unsupported features are refused by exact name.
func TestSigmaRefusals(t *testing.T) {
	head := "title: t\nid: x\nlogsource: {product: azure, service: signinlogs}\n"
	cases := map[string]struct{ src, feature string }{
		"count":        {head + "detection:\n  sel: {ResultType: 50126}\n  condition: sel | count() by IPAddress > 10\n", "aggregation | count()"},
		"near":         {head + "detection:\n  a: {ResultType: 1}\n  b: {ResultType: 2}\n  condition: a near b\n", "near"},
		"timeframe":    {head + "detection:\n  sel: {ResultType: 1}\n  timeframe: 10m\n  condition: sel\n", "timeframe"},
		"base64offset": {head + "detection:\n  sel: {UserAgent|base64offset|contains: abc}\n  condition: sel\n", "modifier base64offset"},
		"windash":      {head + "detection:\n  sel: {UserAgent|windash: abc}\n  condition: sel\n", "modifier windash"},
		"unknown mod":  {head + "detection:\n  sel: {UserAgent|sparkle: abc}\n  condition: sel\n", "modifier sparkle"},
		"field":        {head + "detection:\n  sel: {NetworkLocationDetails: abc}\n  condition: sel\n", "field NetworkLocationDetails"},
		"logsource":    {"title: t\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image: x}\n  condition: sel\n", "logsource product=windows service= category=process_creation"},
		"keywords":     {head + "detection:\n  keywords: [evil, bad]\n  condition: keywords\n", "keyword search"},
		"correlation":  {"title: t\ncorrelation: {type: event_count}\n", "correlation rule"},
		"2 of":         {head + "detection:\n  a: {ResultType: 1}\n  b: {ResultType: 2}\n  condition: 2 of a*\n", "2 of"},
		"m365 shape":   {"title: t\nlogsource: {product: m365, service: audit}\ndetection:\n  sel: {eventName: x}\n  condition: sel\n", "field eventName"},
		"collection":   {head + "detection: {sel: {ResultType: 1}, condition: sel}\n---\ntitle: u\n", "rule collection (several YAML documents)"},
	}
	for name, tc := range cases {
		_, err := ParseSigma(name+".yml", []byte(tc.src))
		var se *SigmaError
		if !errors.As(err, &se) || se.Feature != tc.feature || !errors.Is(err, ErrSigmaUnsupported) {
			t.Errorf("%s: want unsupported %q, got %v", name, tc.feature, err)
		}
	}
	for name, src := range map[string]string{
		"no condition":  head + "detection:\n  sel: {ResultType: 1}\n",
		"unknown sel":   head + "detection:\n  sel: {ResultType: 1}\n  condition: sel and other\n",
		"bad re":        head + "detection:\n  sel: {UserAgent|re: '(?<=x)'}\n  condition: sel\n",
		"unbalanced":    head + "detection:\n  sel: {ResultType: 1}\n  condition: (sel\n",
		"no title":      "logsource: {product: azure, service: signinlogs}\ndetection: {sel: {ResultType: 1}, condition: sel}\n",
		"empty":         "",
		"alias":         head + "detection:\n  sel: &a {ResultType: 1}\n  s2: *a\n  condition: sel\n",
		"exists string": head + "detection:\n  sel: {UserAgent|exists: yes please}\n  condition: sel\n",
	} {
		_, err := ParseSigma(name+".yml", []byte(src))
		var se *SigmaError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), name+".yml") {
			t.Errorf("%s: want a SigmaError naming the file, got %v", name, err)
		}
	}
}

// TestSigmaSemantics: modifiers, wildcards, null, exists, and the condition grammar.
func TestSigmaSemantics(t *testing.T) {
	rec := `{"id":"1","createdDateTime":"2026-11-20T08:13:58Z","userPrincipalName":"a@contoso.com","ipAddress":"10.1.2.3",
	"status":{"errorCode":50126,"failureReason":"Invalid Password","additionalDetails":null},
	"userAgent":"Mozilla/5.0 BAV2ROPC","appDisplayName":"Office 365 Exchange Online","deviceDetail":{"trustType":""},
	"riskEventTypes_v2":["unfamiliarFeatures","anonymizedIPAddress"]}`
	env, err := event.Normalize("", []byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	head := "title: t\nlogsource: {product: azure, service: signinlogs}\ndetection:\n"
	cases := []struct {
		det  string
		want bool
	}{
		{"  s: {ResultType: 50126}\n  condition: s", true},
		{"  s: {ResultType: '50126'}\n  condition: s", true},
		{"  s: {ResultType: 0}\n  condition: s", false},
		{"  s: {Status: Failure}\n  condition: s", true},
		{"  s: {Status: Success}\n  condition: s", false},
		{"  s: {Status|contains: invalid pass}\n  condition: s", true},
		{"  s: {UserAgent: 'mozilla*'}\n  condition: s", true},
		{"  s: {UserAgent: 'mozilla'}\n  condition: s", false},
		{"  s: {UserAgent: '*5.? bav*'}\n  condition: s", true},
		{"  s: {UserAgent|cased|contains: bav2ropc}\n  condition: s", false},
		{"  s: {UserAgent|endswith: ROPC}\n  condition: s", true},
		{"  s: {UserAgent|startswith: [x, Mozi]}\n  condition: s", true},
		{"  s: {UserAgent|contains|all: [mozilla, bav2]}\n  condition: s", true},
		{"  s: {UserAgent|contains|all: [mozilla, chrome]}\n  condition: s", false},
		{"  s: {UserAgent|re: '^Mozilla/\\d'}\n  condition: s", true},
		{"  s: {UserAgent|re|i: '^mozilla'}\n  condition: s", true},
		{"  s: {UserAgent|re: '^mozilla'}\n  condition: s", false},
		{"  s: {IPAddress|cidr: 10.0.0.0/8}\n  condition: s", true},
		{"  s: {IPAddress|cidr: 192.168.0.0/16}\n  condition: s", false},
		{"  s: {DeviceDetail.trustType: ''}\n  condition: s", true},
		{"  s: {DeviceDetail.trustType: null}\n  condition: s", false},
		{"  s: {RiskState: null}\n  condition: s", true},
		{"  s: {RiskState|exists: false}\n  condition: s", true},
		{"  s: {UserAgent|exists: true}\n  condition: s", true},
		{"  s: {RiskEventTypes_V2: anonymizedIPAddress}\n  condition: s", true},
		{"  s: {ResultType|gte: 50000}\n  condition: s", true},
		{"  a: {ResultType: 1}\n  b: {UserAgent|contains: bav}\n  condition: a or b", true},
		{"  a: {ResultType: 1}\n  b: {UserAgent|contains: bav}\n  condition: a and b", false},
		{"  a: {ResultType: 1}\n  b: {UserAgent|contains: bav}\n  condition: not a and b", true},
		{"  a: {ResultType: 1}\n  b: {UserAgent|contains: bav}\n  condition: not (a or b)", false},
		{"  sel_a: {ResultType: 1}\n  sel_b: {UserAgent|contains: bav}\n  condition: 1 of sel_*", true},
		{"  sel_a: {ResultType: 1}\n  sel_b: {UserAgent|contains: bav}\n  condition: all of sel_*", false},
		{"  sel_a: {ResultType: 50126}\n  sel_b: {UserAgent|contains: bav}\n  condition: all of them", true},
		{"  sel_a: {ResultType: 1}\n  _filter: {UserAgent|contains: bav}\n  condition: 1 of them", false},
		{"  s:\n    - {ResultType: 1}\n    - {AppDisplayName: office 365 exchange online}\n  condition: s", true},
		{"  s: {ResultType: [1, 2, 50126], UserAgent|contains: BAV}\n  condition: s", true},
		{"  s: {UserAgent: 'Mozilla/5.0 \\*'}\n  condition: s", false},
		{"  s: {ResultType: 1}\n  t: {ResultType: 50126}\n  condition: [s, t]", true},
	}
	for _, tc := range cases {
		r, err := ParseSigma("t.yml", []byte(head+tc.det+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.det, err)
			continue
		}
		if got := r.matchRef(&env); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.det, got, tc.want)
		}
	}
}

// TestSigmaPlaybookErrors: a refused rule stops the playbook with the rule
// file, the playbook and the feature; a source that disagrees is an error.
func TestSigmaPlaybookErrors(t *testing.T) {
	dir := t.TempDir()
	bad := "title: t\nlogsource: {product: azure, service: signinlogs}\ndetection:\n  s: {ResultType: 1}\n  condition: s | count() > 5\n"
	good := "title: g\nlogsource: {product: azure, service: riskdetection}\ndetection:\n  s: {riskEventType: passwordSpray}\n  condition: s\n"
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "rules", "bad.yml"), []byte(bad), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "good.yml"), []byte(good), 0o644)
	_, err := Load("p.yaml", []byte("name: p\nenabled: true\ntrigger: {sigma: rules}\nsteps: [{action: revoke_sessions}]\n"), LoadOptions{BaseDir: dir})
	if err == nil || !strings.Contains(err.Error(), `playbook "p"`) || !strings.Contains(err.Error(), "bad.yml:5") || !strings.Contains(err.Error(), "unsupported aggregation | count()") {
		t.Errorf("refused rule: %v", err)
	}
	_, err = Load("p.yaml", []byte("name: p\nenabled: true\ntrigger: {source: signin, sigma: good.yml}\nsteps: [{action: revoke_sessions}]\n"), LoadOptions{BaseDir: dir})
	if err == nil || !strings.Contains(err.Error(), "risk_detection") {
		t.Errorf("source mismatch: %v", err)
	}
	set, err := Load("p.yaml", []byte("name: p\nenabled: true\ntrigger: {sigma: good.yml, when: [{field: raw.riskLevel, equals: high}]}\nsteps: [{action: revoke_sessions}]\n"), LoadOptions{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	env := sigmaEnv(t, filepath.Join(sigmaRecords, "azure_identity_protection_password_spray.fires.json"))
	if ms, err := set.Match(env); err != nil || len(ms) != 1 || ms[0].Steps[0].Target.User != "meganb@contoso.com" {
		t.Errorf("sigma + when: %v %v", ms, err)
	}
}
