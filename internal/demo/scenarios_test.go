package demo

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/m365sim"
	"github.com/responder-sec/responder/internal/playbook"
)

// copyPlaybooks copies the shipped playbooks (and their lists) to a temporary
// directory, enabling every playbook that loads enabled, and replacing the files
// named in replace. It returns the directory.
func copyPlaybooks(t *testing.T, replace map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(playbooks, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped playbooks in %s: %v", playbooks, err)
	}
	if err := os.CopyFS(filepath.Join(dir, "lists"), os.DirFS(filepath.Join(playbooks, "lists"))); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		if r, ok := replace[name]; ok {
			b = []byte(r)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Enable each playbook that still loads enabled (a step naming an action the
	// catalogue lacks keeps its playbook off).
	for _, f := range files {
		p := filepath.Join(dir, filepath.Base(f))
		old, _ := os.ReadFile(p)
		on := strings.Replace(string(old), "\nenabled: false", "\nenabled: true", 1)
		if on == string(old) {
			continue
		}
		_ = os.WriteFile(p, []byte(on), 0o600)
		if _, err := playbook.LoadDir(dir, playbook.LoadOptions{VerifiedDomains: demoDomains(), BaseDir: dir}); err != nil {
			t.Logf("%s stays disabled: %v", filepath.Base(f), err)
			_ = os.WriteFile(p, old, 0o600)
		}
	}
	return dir
}

func loadSet(t *testing.T, dir string) *playbook.Set {
	t.Helper()
	set, err := playbook.LoadDir(dir, playbook.LoadOptions{VerifiedDomains: demoDomains(), BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// finals returns the last outcome per action of the records of playbook pb.
func finals(recs []audit.Record, pb string) map[string]audit.Record {
	out := map[string]audit.Record{}
	for _, r := range recs {
		if r.Playbook == pb && r.Outcome != audit.Matched {
			out[r.Action] = r
		}
	}
	return out
}

// assertSteps checks the audit trail and the tenant against each step of the
// scenario's playbook: a step behind approval is pending (and has had no
// effect), any other succeeded and shows in the tenant.
func assertSteps(t *testing.T, res Result, pb *playbook.Playbook, approve bool) {
	t.Helper()
	last := finals(res.Records, pb.Name)
	u := res.User
	for _, s := range pb.Steps {
		a := string(s.Action)
		r, ok := last[a]
		if !ok {
			t.Errorf("%s: no audit record", a)
			continue
		}
		if s.Approval == playbook.ApprovalRequired && !approve {
			if r.Outcome != audit.PendingApproval {
				t.Errorf("%s: last outcome %s, want pending_approval", a, r.Outcome)
			}
			switch a {
			case "revoke_sessions":
				if u.RevokeCount != 0 {
					t.Errorf("sessions revoked %d times before anyone approved", u.RevokeCount)
				}
			case "disable_user":
				if !u.AccountEnabled {
					t.Error("account disabled before anyone approved")
				}
			}
			continue
		}
		if r.Outcome != audit.Succeeded {
			t.Errorf("%s: last outcome %s (%s), want succeeded", a, r.Outcome, r.Detail)
			continue
		}
		switch a {
		case "disable_user":
			if u.AccountEnabled {
				t.Error("the account is still enabled")
			}
		case "revoke_sessions":
			if u.RevokeCount != 1 {
				t.Errorf("sessions revoked %d times, want 1", u.RevokeCount)
			}
		case "reset_password":
			if u.PasswordChanges != 1 || !u.ForceChangePasswordNextSignIn {
				t.Errorf("password changes %d, forced change %t; want 1, true", u.PasswordChanges, u.ForceChangePasswordNextSignIn)
			}
		case "delete_forward_rules":
			var ids []string
			for _, rule := range res.Rules {
				id, _ := rule["id"].(string)
				ids = append(ids, id)
			}
			if res.Attack.RuleID == "" || slices.Contains(ids, res.Attack.RuleID) {
				t.Errorf("attacker's rule %q still in the mailbox (rules %v)", res.Attack.RuleID, ids)
			}
			if res.Attack.KeptRuleID == "" || !slices.Contains(ids, res.Attack.KeptRuleID) {
				t.Errorf("the user's internal rule %q was deleted (rules %v)", res.Attack.KeptRuleID, ids)
			}
		case "remove_mailbox_forwarding":
			if u.ForwardingSmtpAddress != "" {
				t.Errorf("mailbox still forwards to %s", u.ForwardingSmtpAddress)
			}
		case "block_ip":
			pfx, err := actions.ParseIPTarget(r.Target["ip"])
			if err != nil {
				t.Errorf("block_ip target: %v", err)
				continue
			}
			if !pfx.Contains(netip.MustParseAddr(res.Attack.SourceIP)) {
				t.Errorf("blocked %s, not the source %s", r.Target["ip"], res.Attack.SourceIP)
			}
			found := false
			for _, l := range res.NamedLocations {
				rs, _ := l["ipRanges"].([]any)
				for _, x := range rs {
					if m, _ := x.(map[string]any); m["cidrAddress"] == pfx.String() {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no named location holds %s: %v", pfx, res.NamedLocations)
			}
		case "isolate_device":
			if i := slices.IndexFunc(res.Machines, func(m m365sim.Machine) bool { return m.ID == r.Target["device"] }); i < 0 || !res.Machines[i].Isolated {
				t.Errorf("device %s is not isolated", r.Target["device"])
			}
		case "block_file", "block_url", "block_domain", "block_device_ip":
			v := r.Target[map[string]string{"block_file": "file", "block_url": "url", "block_domain": "domain", "block_device_ip": "ip"}[a]]
			if !slices.ContainsFunc(res.Indicators, func(i m365sim.DefenderIndicator) bool { return strings.EqualFold(i.IndicatorValue, v) }) {
				t.Errorf("%s: no Defender indicator for %s", a, v)
			}
		case "block_sender":
			if !slices.ContainsFunc(res.SenderBlocks, func(e m365sim.TABLEntry) bool { return e.Value == r.Target["sender"] && e.Action == "Block" }) {
				t.Errorf("sender %s is not in the Tenant Allow/Block List", r.Target["sender"])
			}
		case "purge_mail":
			// The run itself checks every inbox (checkDefender): a copy left is
			// a scenario error.
			if len(res.Attack.PhishCopies) == 0 {
				t.Errorf("purge_mail without a phishing mail delivered")
			}
		default:
			t.Errorf("no tenant check for %s: add one", a)
		}
	}
	if len(pb.Steps) > 0 && res.FirstAction <= 0 {
		t.Error("no time to first action")
	}
	for _, r := range res.Records {
		if r.Outcome == audit.Matched && r.Playbook != pb.Name {
			t.Errorf("the attack also fired playbook %s", r.Playbook)
		}
	}
	if !res.Verify.OK {
		t.Errorf("audit chain: %+v", res.Verify)
	}
}

func TestRunAllPlaysEveryPlaybook(t *testing.T) {
	dir := copyPlaybooks(t, nil)
	set := loadSet(t, dir)
	var buf bytes.Buffer
	results, err := RunAll(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Timeout: 45 * time.Second})
	t.Log("\n" + buf.String())
	if err != nil {
		t.Errorf("RunAll: %v", err)
	}
	if len(results) != len(scenarios()) {
		t.Fatalf("%d results for %d scenarios", len(results), len(scenarios()))
	}
	// Every shipped playbook has its scenario.
	var played []string
	for _, r := range results {
		played = append(played, r.Playbook)
	}
	for _, pb := range set.Playbooks() {
		if !slices.Contains(played, pb.Name) {
			t.Errorf("shipped playbook %s has no scenario", pb.Name)
		}
	}
	for _, res := range results {
		t.Run(res.Scenario, func(t *testing.T) {
			pb, ok := set.Lookup(res.Playbook)
			if !ok {
				t.Fatalf("no playbook %s", res.Playbook)
			}
			if !pb.Enabled {
				if !errors.Is(res.Err, ErrPlaybookDisabled) {
					t.Errorf("disabled playbook: err = %v, want ErrPlaybookDisabled", res.Err)
				}
				t.Skipf("playbook %s cannot be enabled yet", pb.Name)
			}
			if res.Err != nil {
				t.Errorf("scenario failed: %v", res.Err)
			}
			assertSteps(t, res, pb, false)
			if res.User.UserPrincipalName != "alice@contoso.com" {
				t.Errorf("attacked %s, want alice", res.User.UserPrincipalName)
			}
		})
	}
	// The summary names each scenario with its outcome.
	out := buf.String()
	summary := out[strings.LastIndex(out, "SCENARIO"):]
	for _, r := range results {
		line := ""
		for l := range strings.Lines(summary) {
			if strings.HasPrefix(l, r.Scenario+" ") {
				line = l
			}
		}
		if !strings.Contains(line, r.Playbook) || !strings.Contains(line, outcome(r)) {
			t.Errorf("summary line for %s = %q", r.Scenario, line)
		}
	}
}

// The shipped stateful password-spray playbook (20 distinct users failing
// from one address) blocks the source for a day: the scenario waits for the feed to
// deliver the failures and checks the Conditional Access block.
func TestPasswordSprayBlocksTheSource(t *testing.T) {
	dir := playbooks // the shipped playbook
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Scenario: "password-spray", Timeout: 45 * time.Second})
	t.Log("\n" + buf.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	pb, _ := loadSet(t, dir).Lookup("password-spray")
	assertSteps(t, res, pb, false)
	r := finals(res.Records, "password-spray")["block_ip"]
	if !strings.Contains(r.Detail, "unblocks automatically at") {
		t.Errorf("block_ip detail %q does not say when the block lifts", r.Detail)
	}
	if !strings.Contains(buf.String(), "the block lifts itself at") {
		t.Error("the timeline does not say when the block lifts")
	}
}

// The shipped stateful MFA-fatigue playbook (10 declined prompts, then a
// success) only fires on the success: the attack must deliver it after the declines.
func TestMFAFatigueThresholdThenSuccess(t *testing.T) {
	dir := playbooks // the shipped playbook
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Scenario: "mfa-fatigue", Approve: true, Timeout: 45 * time.Second})
	t.Log("\n" + buf.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	pb, _ := loadSet(t, dir).Lookup("mfa-fatigue")
	assertSteps(t, res, pb, true)
	var matched *audit.Record
	approved := false
	for i, r := range res.Records {
		if r.Outcome == audit.Matched && matched == nil {
			matched = &res.Records[i]
		}
		if r.Outcome == audit.Approved && r.Action == "disable_user" && r.Actor.Name == "local-admin" {
			approved = true
		}
	}
	if matched == nil || !strings.Contains(matched.Detail+matched.Reason, "success") {
		t.Errorf("the playbook did not fire on the successful sign-in: %+v", matched)
	}
	if !approved {
		t.Error("no approval of disable_user by the local administrator in the audit trail")
	}
	if len(res.Pending) != 0 {
		t.Errorf("pending after approval: %v", res.Pending)
	}
}

func TestScenarioApproveRunsTheApprovedStep(t *testing.T) {
	dir := copyPlaybooks(t, nil)
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Scenario: "external-forwarding-rule", Approve: true, Timeout: 45 * time.Second})
	t.Log("\n" + buf.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	pb, _ := loadSet(t, dir).Lookup("external-forwarding-rule")
	assertSteps(t, res, pb, true)
	if got := outcomes(res.Records, "alice@contoso.com")["revoke_sessions"]; !slices.Contains(got, audit.PendingApproval) || got[len(got)-1] != audit.Succeeded {
		t.Errorf("revoke_sessions outcomes %v, want pending_approval ... succeeded", got)
	}
	if !strings.Contains(buf.String(), "the local administrator approves revoke_sessions") {
		t.Error("the timeline does not show the approval")
	}
}

func TestScenarioWithDisabledPlaybookFails(t *testing.T) {
	dir := copyPlaybooks(t, nil)
	p := filepath.Join(dir, "leaked-credentials.yaml")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "\nenabled: true", "\nenabled: false", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Scenario: "leaked-credentials"})
	if !errors.Is(err, ErrPlaybookDisabled) || !strings.Contains(err.Error(), "enabled: false in "+p) {
		t.Fatalf("err = %v, want ErrPlaybookDisabled naming %s", err, p)
	}
	if len(res.Records) != 0 || buf.Len() != 0 {
		t.Errorf("a disabled scenario still ran: %d records, output %q", len(res.Records), buf.String())
	}
	var list bytes.Buffer
	if err := List(&list, dir); err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(list.String()) {
		if strings.HasPrefix(l, "leaked-credentials ") && !strings.Contains(l, " disabled ") {
			t.Errorf("list line %q does not say disabled", l)
		}
	}
}

func TestScenarioThatGetsNoEventTimesOut(t *testing.T) {
	var buf bytes.Buffer
	// Without a premium licence the sign-in log answers 403: no event ever arrives.
	_, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: playbooks, Scenario: "risky-signin-anonymous-ip",
		Timeout: 3 * time.Second, Prepare: func(t *m365sim.Tenant) { t.SetPremium(false) }})
	t.Log("\n" + buf.String())
	if err == nil {
		t.Fatal("a scenario without events passed")
	}
	for _, want := range []string{"scenario risky-signin-anonymous-ip", "revoke_sessions did not finish", "no event arrived from the signins feed", "timed out after 3s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestUnknownScenarioListsTheValidOnes(t *testing.T) {
	_, err := Run(context.Background(), Options{Scenario: "nope", PlaybookDir: playbooks})
	if err == nil {
		t.Fatal("unknown scenario accepted")
	}
	for _, want := range append(ScenarioNames(), "risky-user", "all") {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not list %s", err, want)
		}
	}
	for _, alias := range []string{"risky-user", "high-risk-user", "", "MFA-Fatigue"} {
		if _, err := lookup(alias); err != nil {
			t.Errorf("lookup(%q): %v", alias, err)
		}
	}
}

func TestSummaryOutcomes(t *testing.T) {
	pending := audit.Record{Action: "revoke_sessions", Outcome: audit.PendingApproval}
	var buf bytes.Buffer
	printSummary(&buf, []Result{
		{Scenario: "a", Playbook: "pa", FirstAction: 1500 * time.Millisecond},
		{Scenario: "b", Playbook: "pb", Pending: []audit.Record{pending}, FirstAction: 20 * time.Millisecond},
		{Scenario: "c", Playbook: "pc", Err: ErrPlaybookDisabled},
		{Scenario: "d", Playbook: "pd", Err: errors.New("boom")},
	})
	want := []string{
		"SCENARIO  PLAYBOOK  OUTCOME                         FIRST ACTION",
		"a         pa        contained                       1.50s",
		"b         pb        contained, 1 awaiting approval  0.02s",
		"c         pc        disabled                        -",
		"d         pd        failed                          -",
	}
	got := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
