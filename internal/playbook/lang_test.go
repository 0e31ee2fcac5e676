package playbook

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

// header builds a playbook around a trigger body for the condition tables.
func pbWith(source, when string) string {
	return `name: t
enabled: true
trigger:
  source: ` + source + `
  when:
` + indent(when, "    ") + `
steps:
  - action: revoke_sessions
`
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}

const auditRec = `{"CreationTime":"2026-11-18T07:41:09","Id":"r1","Operation":"New-InboxRule","RecordType":1,
"ResultStatus":"True","Workload":"Exchange","ClientIP":"198.51.100.23:51512","UserId":"meganb@contoso.com",
"@odata.type":"x.y","Count":"42","Nested":{"Deep":[{"A":1},{"A":2}]},
"Parameters":[{"Name":"ForwardTo","Value":"SMTP:Evil@Outside.example; bob@contoso.com"},{"Name":"Name","Value":"rule 1"},{"Name":"StopProcessingRules","Value":"True"}],
"OperationProperties":[{"Name":"RuleActions","Value":"[{\"ActionType\":\"Redirect\",\"Recipients\":[\"x@Other.example\"]}]"}]}`

func auditEnv(t *testing.T, raw string) *event.Envelope {
	t.Helper()
	env, err := event.Normalize("", json.RawMessage(raw))
	if err != nil {
		t.Fatalf("normalize: %v", err)
	}
	return &env
}

func TestConditions(t *testing.T) {
	env := auditEnv(t, auditRec)
	cases := []struct {
		name, when string
		want       bool
	}{
		{"equals envelope kind", `- {field: kind, equals: new-inboxrule}`, true},
		{"equals case sensitive", `- {field: kind, equals: new-inboxrule, case_sensitive: true}`, false},
		{"equals raw", `- {field: raw.ResultStatus, equals: "true"}`, true},
		{"equals number vs string", `- {field: raw.Count, equals: 42.0}`, true},
		{"equals missing", `- {field: raw.Nope, equals: x}`, false},
		{"in", `- {field: raw.Workload, in: [SharePoint, exchange]}`, true},
		{"in miss", `- {field: raw.Workload, in: [SharePoint]}`, false},
		{"contains", `- {field: user, contains: "@contoso"}`, true},
		{"starts_with", `- {field: kind, starts_with: [Set-, New-]}`, true},
		{"ends_with", `- {field: user, ends_with: .org}`, false},
		{"matches", `- {field: raw.ObjectIdMissing, matches: "."}`, false},
		{"matches ok", `- {field: user, matches: '^MEGAN'}`, true},
		{"cidr", `- {field: ip, cidr: [198.51.100.0/24]}`, true},
		{"cidr addr", `- {field: ip, cidr: 198.51.100.23}`, true},
		{"cidr miss", `- {field: ip, cidr: [10.0.0.0/8, "2001:db8::/32"]}`, false},
		{"cidr on raw with port", `- {field: raw.ClientIP, cidr: 198.51.100.0/24}`, true},
		{"gt", `- {field: raw.Count, gt: 41}`, true},
		{"gte lte range", `- {field: raw.Count, gte: 42, lte: 42}`, true},
		{"lt", `- {field: raw.Count, lt: 42}`, false},
		{"gt non number", `- {field: user, gt: 1}`, false},
		{"exists", `- {field: raw.Parameters, exists: true}`, true},
		{"exists false", `- {field: raw.Nope, exists: false}`, true},
		{"exists false on present", `- {field: user, exists: false}`, false},
		{"path index", `- {field: raw.Nested.Deep.1.A, equals: 2}`, true},
		{"path quoted key", `- {field: 'raw["@odata.type"]', equals: x.y}`, true},
		{"path selector", `- {field: "raw.Parameters[Name=name].Value", equals: rule 1}`, true},
		{"path into JSON string", `- {field: raw.OperationProperties.0.Value.0.ActionType, equals: redirect}`, true},
		{"list any implicit", `- {field: forward_recipients, ends_with: outside.example}`, true},
		{"any where", "- any: raw.Parameters\n  where:\n    - {field: Name, equals: ForwardTo}\n    - {field: Value, contains: smtp:}", true},
		{"any where miss", "- any: raw.Parameters\n  where:\n    - {field: Name, equals: RedirectTo}", false},
		{"all where", "- all: raw.Parameters\n  where: {field: Value, exists: true}", true},
		{"all where miss", "- all: raw.Parameters\n  where: {field: Name, equals: ForwardTo}", false},
		{"all over missing list", "- all: raw.Nope\n  where: {field: ., exists: true}", false},
		{"any over scalar", "- any: raw.Workload\n  where: {field: ., exists: true}", false},
		{"any on elem itself", "- any: forward_recipients\n  where: {field: ., equals: bob@contoso.com}", true},
		{"not", `- {not: {field: kind, equals: Set-Mailbox}}`, true},
		{"not list", "- not:\n    - {field: kind, equals: New-InboxRule}\n    - {field: ip, exists: true}", false},
		{"or", "- or:\n    - {field: kind, equals: a}\n    - {field: kind, equals: New-InboxRule}", true},
		{"and", "- and:\n    - {field: kind, equals: New-InboxRule}\n    - {field: kind, equals: a}", false},
		{"external helper", `- {field: external_forward_recipients, equals: evil@outside.example}`, true},
		{"external excludes verified", `- {field: external_forward_recipients, equals: bob@contoso.com}`, false},
		{"forward from RuleActions", `- {field: forward_recipients, equals: x@other.example}`, true},
		{"expr", `- expr: 'kind == "New-InboxRule" && raw.Count == "42" && len(external_forward_recipients) == 2'`, true},
		{"expr in_cidr", `- expr: 'in_cidr(ip, "198.51.100.0/24")'`, true},
		{"expr false", `- expr: 'raw.Workload == "SharePoint"'`, false},
		{"expr missing raw key", `- expr: 'raw.Nope == nil'`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load("t.yaml", []byte(pbWith("audit", tc.when)), LoadOptions{VerifiedDomains: []string{"Contoso.com"}})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			ms, err := set.Match(env)
			if err != nil {
				t.Fatalf("match: %v", err)
			}
			if got := len(ms) == 1; got != tc.want {
				t.Errorf("fired = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	src := `name: Bad_Name
enabled: true
colour: red
trigger:
  source: auditz
  when:
    - {field: raw.X, equals: [a, b]}
    - {field: nosuch, equals: a}
    - {field: raw.X, matches: "("}
    - {field: raw.X, cidr: 300.1.1.1/8}
    - {field: raw.X}
    - expr: 'raw.X +'
    - expr: 'unknown_var == 1'
steps:
  - action: launch_missiles
  - action: disable_user
    target: {user: "{{ user "}
    approval: maybe
  - action: revoke_sessions
    params: {a: "{{ nope }}"}
    dry_run: yes please
  - {action: remove_mailbox_forwarding, target: {user: "not a upn"}}
suppression: {window: forever}
blast_radius: {max: 0, window: 1h}
---
name: ok-one
enabled: true
trigger: {source: signin}
steps: [{action: revoke_sessions}]
---
name: ok-one
enabled: true
trigger: {source: signin}
steps: [{action: revoke_sessions}]
`
	_, err := Load("bad.yaml", []byte(src), LoadOptions{})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want *LoadError, got %v", err)
	}
	msg := err.Error()
	wants := []string{
		`bad.yaml:1: playbook "Bad_Name": name "Bad_Name" must be lower-case`,
		`bad.yaml:3: playbook "Bad_Name": playbook: unknown field "colour"`,
		`bad.yaml:5: playbook "Bad_Name": trigger.source "auditz"`,
		`bad.yaml:7: playbook "Bad_Name": equals takes one value`,
		`bad.yaml:8: playbook "Bad_Name": unknown field "nosuch"`,
		`bad.yaml:9: playbook "Bad_Name": matches: error parsing regexp`,
		`bad.yaml:10: playbook "Bad_Name": cidr: "300.1.1.1/8"`,
		`bad.yaml:11: playbook "Bad_Name": condition on raw.X has no operator`,
		`bad.yaml:12: playbook "Bad_Name": expr:`,
		`bad.yaml:13: playbook "Bad_Name": expr: unknown name unknown_var`,
		`bad.yaml:15: playbook "Bad_Name": step 1 (launch_missiles): unknown action "launch_missiles"`,
		`bad.yaml:17: playbook "Bad_Name": step 2 (disable_user): target.user: template`,
		`bad.yaml:18: playbook "Bad_Name": step 2 (disable_user): approval must be "required"`,
		`bad.yaml:20: playbook "Bad_Name": step 3 (revoke_sessions): params: template "{{ nope }}": unknown field "nope"`,
		`bad.yaml:21: playbook "Bad_Name": step 3 (revoke_sessions): dry_run must be true or false`,
		`bad.yaml:22: playbook "Bad_Name": step 4 (remove_mailbox_forwarding): target.user "not a upn" is not valid`,
		`bad.yaml:23: playbook "Bad_Name": suppression.window: "forever" is not a duration`,
		`bad.yaml:24: playbook "Bad_Name": blast_radius.max must be a whole number`,
		`bad.yaml:31: playbook "ok-one": playbook name "ok-one" is already used at bad.yaml:26`,
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("missing problem %q", w)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%s", msg)
	}
}

func TestLoadStrictness(t *testing.T) {
	cases := map[string]string{
		"missing enabled":     "name: a\ntrigger: {source: audit}\nsteps: [{action: disable_user}]\n",
		"anchor":              "name: a\nenabled: true\ntrigger: &t {source: audit}\nsteps: [{action: disable_user}]\n",
		"threshold no window": "name: a\nenabled: true\ntrigger: {source: signin, threshold: {count: 5}}\nsteps: [{action: disable_user}]\n",
		"no steps":            "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: []\n",
		"literal bad target":  "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: disable_user, target: {user: 'not a upn'}}]\n",
		"unknown step field":  "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: disable_user, when: x}]\n",
		"not a mapping":       "- a\n- b\n",
		"yaml syntax":         "name: [a\n",
		"both any and all":    "name: a\nenabled: true\ntrigger: {source: audit, when: [{any: raw.A, all: raw.B, where: {field: ., exists: true}}]}\nsteps: [{action: disable_user}]\n",
		"expr inside any":     "name: a\nenabled: true\ntrigger: {source: audit, when: [{any: raw.A, where: {expr: 'true'}}]}\nsteps: [{action: disable_user}]\n",
		"two kinds one cond":  "name: a\nenabled: true\ntrigger: {source: audit, when: [{not: {field: kind, exists: true}, expr: 'true'}]}\nsteps: [{action: disable_user}]\n",
		"ip list missing":     "name: a\nenabled: true\ntrigger: {source: audit, when: [{field: ip, in_ip_list: nope.txt}]}\nsteps: [{action: disable_user}]\n",
		"custom tag":          "name: !foo a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: disable_user}]\n",
		"suppression literal": "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: disable_user}]\nsuppression: {window: 1h, key: fixed}\n",
		// Fixed step parameters are checked against the catalogue at load.
		"undeclared param":        "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: revoke_sessions, params: {n: 3}}]\n",
		"param of the wrong kind": "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: block_ip, target: {ip: '{{ ip }}'}, params: {expires: soon}}]\n",
		"undeclared templated":    "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: revoke_sessions, params: {why: '{{ kind }}'}}]\n",
		"enum param":              "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: delete_forward_rules, params: {scope: everything}}]\n",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load("x.yaml", []byte(src), LoadOptions{BaseDir: t.TempDir()})
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("want a LoadError, got %v", err)
			}
		})
	}
}

func TestStepsTemplatesAndGuards(t *testing.T) {
	src := `name: full
enabled: true
dry_run: false
trigger:
  source: audit
  kind: [new-inboxrule]
steps:
  - action: delete_forward_rules
    dry_run: true
    params:
      recipients: "{{ external_forward_recipients }}"
      rule: "to {{ forward_recipients }}"
      scope: "{{ raw.Nope || 'all' }}"
  - action: disable_user
    approval: required
    target: {user: "{{ raw.UserId }}"}
  - action: disable_forward_rules
    params:
      rule: "{{ raw.Parameters[Name=Name].Value }}"
      recipients: [a, "{{ kind }}"]
suppression: {window: 2h, key: "{{ ip }}"}
blast_radius: {max: 3, window: 1h}
`
	set, err := Load("full.yaml", []byte(src), LoadOptions{VerifiedDomains: []string{"contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := set.Match(auditEnv(t, auditRec))
	if err != nil || len(ms) != 1 {
		t.Fatalf("match: %v %v", ms, err)
	}
	m := ms[0]
	p := m.Steps[0].Params
	if got, _ := json.Marshal(p); string(got) != `{"recipients":["evil@outside.example","x@other.example"],"rule":"to evil@outside.example;bob@contoso.com;x@other.example","scope":"all"}` {
		t.Errorf("params = %s", got)
	}
	if got, _ := json.Marshal(m.Steps[2].Params); string(got) != `{"recipients":["a","New-InboxRule"],"rule":"rule 1"}` {
		t.Errorf("step 3 params = %s", got)
	}
	if !m.Steps[0].DryRun || m.Steps[1].DryRun {
		t.Errorf("dry run: %+v", m.Steps)
	}
	if m.Approval[0] != "" || m.Approval[1] != ApprovalRequired {
		t.Errorf("approval: %v", m.Approval)
	}
	if m.Steps[0].Target.User != "meganb@contoso.com" || m.Steps[1].Target.User != "meganb@contoso.com" {
		t.Errorf("targets: %+v", m.Steps)
	}
	if m.SuppressionKey != "full/198.51.100.23" || m.Suppression != 2*time.Hour || m.BlastRadius != (BlastRadius{Max: 3, Window: time.Hour}) {
		t.Errorf("guards: %q %v %+v", m.SuppressionKey, m.Suppression, m.BlastRadius)
	}
	if !strings.Contains(m.Reason, `audit "New-InboxRule"`) {
		t.Errorf("reason %q", m.Reason)
	}

	// A playbook-level dry run makes every step a dry run.
	set2, err := Load("d.yaml", []byte(strings.Replace(src, "dry_run: false", "dry_run: true", 1)), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ = set2.Match(auditEnv(t, auditRec))
	if len(ms) != 1 || !ms[0].Steps[1].DryRun {
		t.Errorf("playbook dry_run not applied: %+v", ms)
	}

	// No user on the event: the playbook does not fire and the error says why.
	noUser := strings.Replace(auditRec, `"UserId":"meganb@contoso.com",`, "", 1)
	ms, err = set.Match(auditEnv(t, noUser))
	if len(ms) != 0 || err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("want no match and a no-user error, got %v %v", ms, err)
	}

	// Disabled playbooks never fire through Match, but Evaluate tests them.
	set3, _ := Load("d.yaml", []byte(strings.Replace(src, "enabled: true", "enabled: false", 1)), LoadOptions{})
	ms, _ = set3.Match(auditEnv(t, auditRec))
	if len(ms) != 0 {
		t.Error("disabled playbook fired")
	}
	p0 := set3.Playbooks()[0]
	if m, err := set3.evaluate(p0, auditEnv(t, auditRec)); err != nil || m == nil {
		t.Errorf("Evaluate: %v %v", m, err)
	}
}

func TestMatchBadInput(t *testing.T) {
	set := loadShipped(t)
	if _, err := set.Match(nil); err == nil {
		t.Error("nil envelope: want error")
	}
	for _, raw := range []string{"", "null", "[1,2]", `"x"`, "{", `{"riskLevel":{"a":1}}`} {
		env := &event.Envelope{Source: event.SourceRiskDetection, Kind: "x", User: "a@contoso.com", Raw: json.RawMessage(raw)}
		ms, _ := set.Match(env)
		if len(ms) != 0 {
			t.Errorf("raw %q fired %v", raw, names(ms))
		}
	}
}

func TestForwardRecipients(t *testing.T) {
	cases := []struct {
		raw  string
		want string
	}{
		{`{"Operation":"New-InboxRule","Parameters":[{"Name":"ForwardTo","Value":"smtp:A@x.example;b@y.example"},{"Name":"RedirectTo","Value":"\"Joe\" [SMTP:joe@z.example]"}]}`, "a@x.example b@y.example joe@z.example"},
		{`{"Operation":"Set-InboxRule","Parameters":[{"Name":"ForwardAsAttachmentTo","Value":"a@x.example"},{"Name":"ForwardTo","Value":"A@X.example"}]}`, "a@x.example"},
		{`{"Operation":"Set-Mailbox","Parameters":[{"Name":"ForwardingSmtpAddress","Value":"smtp:out@ext.example"},{"Name":"ForwardingAddress","Value":"Sales Team"}]}`, "out@ext.example sales team"},
		{`{"Operation":"Set-Mailbox","Parameters":[{"Name":"ForwardingSmtpAddress","Value":""}]}`, ""},
		{`{"Operation":"UpdateInboxRules","OperationProperties":[{"Name":"RuleActions","Value":"[{\"ActionType\":\"Forward\",\"Recipients\":[\"u@mail.example\"]},{\"ActionType\":\"MoveToFolder\"}]"}]}`, "u@mail.example"},
		{`{"Operation":"UpdateInboxRules","OperationProperties":[{"Name":"RuleActions","Value":"not json"}]}`, ""},
		{`{"Operation":"New-InboxRule","Parameters":"-ForwardTo a@b.example"}`, ""},
		{`{"Operation":"MailItemsAccessed","Parameters":[{"Name":"ForwardTo","Value":"a@b.example"}]}`, ""},
		{`[]`, ""},
	}
	for _, tc := range cases {
		got := strings.Join(ForwardRecipients(&event.Envelope{Raw: json.RawMessage(tc.raw)}), " ")
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.raw, got, tc.want)
		}
	}
	s := &Set{verified: map[string]bool{"contoso.com": true}}
	for addr, want := range map[string]bool{
		"a@contoso.com": false, "a@CONTOSO.com": false, "a@sub.contoso.com": true, "a@fabrikam.example": true,
		"alias-without-domain": false, "a@userdomain.example": false,
	} {
		if got := s.isExternal(strings.ToLower(addr), "me@userdomain.example"); got != want {
			t.Errorf("isExternal(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestIPList(t *testing.T) {
	dir := t.TempDir()
	list := "# comment\n10.1.2.3\n192.0.2.0/24 # trailing\n\n::ffff:203.0.113.9\n2001:db8::/32\n"
	if err := os.WriteFile(filepath.Join(dir, "l.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "name: a\nenabled: true\ntrigger: {source: signin, when: [{field: ip, in_ip_list: l.txt}]}\nsteps: [{action: revoke_sessions}]\n"
	set, err := Load("a.yaml", []byte(src), LoadOptions{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.1.2.3": true, "10.1.2.4": false, "192.0.2.200": true, "203.0.113.9": true, "2001:db8::5": true, "2001:db9::5": false} {
		env := &event.Envelope{Source: event.SourceSignIn, IP: ip, User: "a@contoso.com", Raw: json.RawMessage(`{}`)}
		ms, err := set.Match(env)
		if err != nil {
			t.Fatal(err)
		}
		if (len(ms) == 1) != want {
			t.Errorf("%s: fired=%v want %v", ip, len(ms) == 1, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.txt"), []byte("10.0.0.1\nnot-an-ip\n1.2.3.4/99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load("a.yaml", []byte(strings.Replace(src, "l.txt", "bad.txt", 1)), LoadOptions{BaseDir: dir})
	if err == nil || !strings.Contains(err.Error(), "bad.txt:2") || !strings.Contains(err.Error(), "bad.txt:3") {
		t.Errorf("want both bad lines reported, got %v", err)
	}
}

func TestLoadDirSkipsSubdirsAndReportsAllFiles(t *testing.T) {
	dir := t.TempDir()
	must := func(name, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must("testdata/ignored.yaml", "garbage: [")
	must("notes.txt", "not yaml")
	must("a.yml", "name: a\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: nope1}]\n")
	must("b.yaml", "name: b\nenabled: true\ntrigger: {source: audit}\nsteps: [{action: nope2}]\n")
	_, err := LoadDir(dir, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "a.yml:4") || !strings.Contains(err.Error(), "b.yaml:4") || strings.Contains(err.Error(), "ignored") {
		t.Errorf("got %v", err)
	}
}
