package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365sim"
	"github.com/responder-sec/responder/internal/playbook"
)

// defaultScenario is the risky user, played by `responder demo` with no flags.
const defaultScenario = "risky-user"

// All is the --scenario value that plays every scenario.
const All = "all"

// Addresses the attacks come from: an anonymising (Tor) exit and documentation
// ranges, none of them on the shipped blocklist (playbooks/lists).
const (
	torExitIP   = "185.220.101.47"
	bomberIP    = "203.0.113.80"
	sprayIP     = "203.0.113.199"
	mailThiefIP = "203.0.113.66"
	dropMailbox = "billing-archive@proton.example"
)

// scenario is one attack, played to exercise one shipped playbook.
type scenario struct {
	name     string // the --scenario name
	alias    string // another accepted name ("" when none)
	playbook string // the playbook it exercises
	attack   string // what the attacker does, one line
	play     func(ctx context.Context, a *attacker) error
}

// scenarios lists the attacks, the default first.
func scenarios() []scenario {
	return append([]scenario{
		{name: defaultScenario, alias: "high-risk-user", playbook: "high-risk-user",
			attack: "Identity Protection rates a detection for the user high", play: riskyUser},
		{name: "external-forwarding-rule", playbook: "external-forwarding-rule",
			attack: "an attacker in the user's mailbox adds an inbox rule forwarding invoices outside", play: forwardingRule},
		{name: "external-mailbox-forwarding", playbook: "external-mailbox-forwarding",
			attack: "an attacker forwards the user's whole mailbox outside (Set-Mailbox)", play: mailboxForwarding},
		{name: "leaked-credentials", playbook: "leaked-credentials",
			attack: "Identity Protection finds the user's password in a leak", play: leakedCredentials},
		{name: "mfa-fatigue", playbook: "mfa-fatigue",
			attack: "an attacker with the password pushes MFA prompts until the user gives in", play: mfaFatigue},
		{name: "mfa-fraud-report", playbook: "mfa-fraud-report",
			attack: "an attacker with the password triggers an MFA prompt; the user declines it and reports fraud", play: mfaFraudReport},
		{name: "password-spray", playbook: "password-spray",
			attack: "one address tries one password against every account", play: passwordSpray},
		{name: "password-spray-success", playbook: "password-spray-success",
			attack: "Identity Protection ties the user to a password spray that guessed the password", play: passwordSpraySuccess},
		{name: "risky-signin-anonymous-ip", playbook: "risky-signin-anonymous-ip",
			attack: "the user's account signs in from a Tor exit node", play: anonymousSignIn},
		{name: "risky-detection-anonymous-ip", playbook: "risky-detection-anonymous-ip",
			attack: "Identity Protection reports a sign-in from an anonymising address (the detection feed)", play: anonymousDetection},
	}, defenderScenarios()...)
}

// ScenarioInfo describes one scenario.
type ScenarioInfo struct {
	Name     string
	Alias    string // another accepted name, if any
	Playbook string
	Attack   string
}

// Scenarios lists the scenarios in the order RunAll plays them.
func Scenarios() []ScenarioInfo {
	var out []ScenarioInfo
	for _, s := range scenarios() {
		out = append(out, ScenarioInfo{Name: s.name, Alias: s.alias, Playbook: s.playbook, Attack: s.attack})
	}
	return out
}

// ScenarioNames are the names --scenario accepts, "all" last.
func ScenarioNames() []string {
	var out []string
	for _, s := range scenarios() {
		out = append(out, s.name)
		if s.alias != "" {
			out = append(out, s.alias)
		}
	}
	return append(out, All)
}

func lookup(name string) (scenario, error) {
	if name == "" {
		name = defaultScenario
	}
	for _, s := range scenarios() {
		if strings.EqualFold(name, s.name) || (s.alias != "" && strings.EqualFold(name, s.alias)) {
			return s, nil
		}
	}
	return scenario{}, fmt.Errorf("demo: unknown scenario %q; valid: %s", name, strings.Join(ScenarioNames(), ", "))
}

// List prints the scenarios with the state of their playbooks in playbookDir
// and what each waits for.
func List(w io.Writer, playbookDir string) error {
	set, err := playbook.LoadDir(playbookDir, playbook.LoadOptions{VerifiedDomains: demoDomains(), BaseDir: playbookDir})
	if err != nil {
		return fmt.Errorf("demo: playbooks in %s: %w", playbookDir, err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPLAYBOOK\tSTATE\tWAITS FOR\tATTACK")
	for _, s := range scenarios() {
		state, waits := "missing", "-"
		if pb, ok := set.Lookup(s.playbook); ok {
			state, waits = "enabled", expectation(pb, false)
			if !pb.Enabled {
				state = "disabled"
			}
		}
		name := s.name
		if s.alias != "" {
			name += " (" + s.alias + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, s.playbook, state, waits, s.attack)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "\n--scenario %s plays every scenario in turn, each on a fresh sandbox, then prints a summary.\n", All)
	return err
}

// attacker plays an attack against the sandbox tenant.
type attacker struct {
	tenant    *m365sim.Tenant
	victim    m365sim.User
	pb        *playbook.Playbook
	sources   map[event.Source]bool // the feeds running (nil: all)
	protected []string
	tl        *timeline
	events    *eventLog
	facts     *Attack
}

func (a *attacker) say(format string, args ...any) { a.tl.attack(fmt.Sprintf(format, args...)) }

// await waits until the engine has published n events of src that satisfy
// pred, so that the next part of the attack comes after them, as it would in
// a real tenant. When src's feed does not run there is nothing to wait for.
func (a *attacker) await(ctx context.Context, src event.Source, n int, what string, pred func(event.Envelope) bool) error {
	if a.sources != nil && !a.sources[src] {
		return nil
	}
	got, err := a.events.wait(ctx, n, func(e event.Envelope) bool { return e.Source == src && pred(e) })
	if err != nil {
		return fmt.Errorf("the %s feed delivered %d of the %d %s: %w", src, got, n, what, err)
	}
	return nil
}

func (a *attacker) threshold(min int) int {
	if th := a.pb.Trigger.Threshold; th != nil && th.Count > min {
		return th.Count
	}
	return min
}

// logged is the time stamp of a sign-in that happens now: the sign-in log
// lists it a moment later, so it is stamped a little in the past (the feed
// reads whole seconds that have passed).
func logged() time.Time { return time.Now().UTC().Add(-1500 * time.Millisecond) }

func riskyUser(_ context.Context, a *attacker) error {
	v := a.victim
	det := a.tenant.InjectRiskDetection(m365sim.RiskDetection{
		UserID: v.ID, UserPrincipalName: v.UserPrincipalName, UserDisplayName: v.DisplayName,
		// Impossible travel: a high-risk detection of its own, so the scenario
		// exercises high-risk-user alone (an anonymizedIPAddress detection
		// also fires risky-detection-anonymous-ip).
		RiskEventType: "unlikelyTravel", RiskLevel: "high", IPAddress: torExitIP, Activity: "signin",
	})
	a.facts.SourceIP = det.IPAddress
	a.say("the tenant raises a high-risk detection %s (%s) for %s from %s",
		det.ID, det.RiskEventType, v.UserPrincipalName, det.IPAddress)
	return nil
}

// otherMailbox is another user of the tenant with a mailbox.
func (a *attacker) otherMailbox() string {
	for _, u := range a.tenant.Users() {
		if u.ID != a.victim.ID && !u.NoMailbox && u.AccountEnabled {
			return u.UserPrincipalName
		}
	}
	return ""
}

func forwardingRule(_ context.Context, a *attacker) error {
	v := a.victim
	if colleague := a.otherMailbox(); colleague != "" {
		body, _ := json.Marshal(map[string]any{
			"displayName": "Copy to " + colleague, "sequence": 1, "isEnabled": true,
			"conditions": map[string]any{"fromAddresses": []any{map[string]any{"emailAddress": map[string]any{"address": "ceo@contoso.com"}}}},
			"actions":    map[string]any{"forwardTo": []any{map[string]any{"emailAddress": map[string]any{"name": colleague, "address": colleague}}}},
		})
		id, err := a.tenant.AddRawMessageRule(v.ID, body)
		if err != nil {
			return err
		}
		a.facts.KeptRuleID = id
		a.say("%s's mailbox already has its own rule forwarding the CEO's mail to %s (internal: it must stay)", v.UserPrincipalName, colleague)
	}
	ruleID, recID, err := a.tenant.InjectForwardingRule(m365sim.ForwardingRule{
		User: v.ID, RuleName: ".", ForwardTo: []string{dropMailbox}, SubjectContains: []string{"invoice", "payment", "wire"},
		MarkAsRead: true, MoveToFolder: "RSS Feeds", ClientIP: mailThiefIP,
	})
	if err != nil {
		return err
	}
	a.facts.SourceIP, a.facts.RuleID, a.facts.ForwardTo = mailThiefIP, ruleID, dropMailbox
	a.say("an attacker signed in as %s from %s adds inbox rule \".\": mail about invoices, payments or wires goes to %s, marked read, into RSS Feeds (New-InboxRule, audit record %s)",
		v.UserPrincipalName, mailThiefIP, dropMailbox, recID)
	return nil
}

func mailboxForwarding(_ context.Context, a *attacker) error {
	v := a.victim
	recID, err := a.tenant.InjectMailboxForwarding(m365sim.MailboxForwarding{
		User: v.ID, ForwardingSmtpAddress: dropMailbox, DeliverToMailboxAndForward: true, ClientIP: mailThiefIP,
	})
	if err != nil {
		return err
	}
	a.facts.SourceIP, a.facts.ForwardTo = mailThiefIP, dropMailbox
	a.say("an attacker signed in as %s from %s forwards the whole mailbox to %s, keeping a copy so nobody notices (Set-Mailbox -ForwardingSmtpAddress, audit record %s)",
		v.UserPrincipalName, mailThiefIP, dropMailbox, recID)
	return nil
}

func leakedCredentials(_ context.Context, a *attacker) error {
	v := a.victim
	// Medium, not high: a high detection would also fire high-risk-user, and
	// this scenario is about the leaked-credentials playbook.
	det := a.tenant.InjectRiskDetection(m365sim.RiskDetection{
		UserID: v.ID, UserPrincipalName: v.UserPrincipalName, UserDisplayName: v.DisplayName,
		RiskEventType: "leakedCredentials", RiskLevel: "medium", DetectionTimingType: "offline", Activity: "user",
		AdditionalInfo: "[]",
	})
	a.say("Identity Protection finds %s's current password in a leak: detection %s (%s, offline)",
		v.UserPrincipalName, det.ID, det.RiskEventType)
	return nil
}

func mfaFatigue(ctx context.Context, a *attacker) error {
	v := a.victim
	n := a.threshold(10)
	const gap = 15 * time.Second
	denied, err := a.tenant.InjectMFAFatigue(m365sim.MFAFatigue{
		User: v.ID, IPAddress: bomberIP, Denied: n, Gap: gap, End: logged(), City: "Amsterdam", CountryOrRegion: "NL",
	})
	if err != nil {
		return err
	}
	a.facts.SourceIP = bomberIP
	a.say("an attacker holding %s's password signs in from %s %d times in %s; %s declines each MFA prompt (500121)",
		v.UserPrincipalName, bomberIP, len(denied), time.Duration(n-1)*gap, v.DisplayName)
	if err := a.await(ctx, event.SourceSignIn, n, "declined sign-ins", func(e event.Envelope) bool {
		return e.Kind == event.KindSignInFailure && strings.EqualFold(e.User, v.UserPrincipalName)
	}); err != nil {
		return err
	}
	ok := a.tenant.InjectSignIn(m365sim.SignIn{UserID: v.ID, IPAddress: bomberIP, City: "Amsterdam", CountryOrRegion: "NL", CreatedDateTime: logged()})
	a.say("worn down, %s approves the next prompt: the attacker is signed in from %s (sign-in %s)", v.DisplayName, bomberIP, ok.ID)
	return nil
}

func passwordSpray(ctx context.Context, a *attacker) error {
	v := a.victim
	// Staff added to the small tenant for the spray to try.
	sprayFirst := []string{"dana", "erik", "farah", "gus", "hana", "ivan", "julia", "kofi", "lena", "marco", "nina", "omar", "priya",
		"quinn", "rosa", "sam", "tariq", "uma", "victor", "wen", "xavier", "yara", "zoe", "liam"}
	need := a.threshold(24)
	var tried []string
	for _, u := range a.tenant.Users() {
		if u.ID != v.ID && !slices.ContainsFunc(a.protected, func(p string) bool {
			return strings.EqualFold(p, u.UserPrincipalName) || strings.EqualFold(p, u.ID)
		}) {
			tried = append(tried, u.UserPrincipalName)
		}
	}
	for i := 0; len(tried) < need; i++ {
		name := fmt.Sprintf("%s.staff%d@contoso.com", sprayFirst[i%len(sprayFirst)], i/len(sprayFirst)+1)
		if _, ok := a.tenant.User(name); ok {
			continue
		}
		u := a.tenant.AddUser(m365sim.User{UserPrincipalName: name, Department: "Sales"})
		tried = append(tried, u.UserPrincipalName)
	}
	const gap = 2 * time.Second
	failed, err := a.tenant.InjectPasswordSpray(m365sim.PasswordSpray{
		IPAddress: sprayIP, Users: tried, Gap: gap, End: logged(), City: "Chisinau", CountryOrRegion: "MD",
	})
	if err != nil {
		return err
	}
	a.facts.SourceIP = sprayIP
	a.say("%s tries one password against %d accounts in %s: every sign-in fails (50126)", sprayIP, len(failed), time.Duration(len(failed)-1)*gap)
	if err := a.await(ctx, event.SourceSignIn, len(failed), "failed sign-ins", func(e event.Envelope) bool {
		return e.Kind == event.KindSignInFailure && e.IP == sprayIP
	}); err != nil {
		return err
	}
	return nil
}

func mfaFraudReport(_ context.Context, a *attacker) error {
	v := a.victim
	denied, err := a.tenant.InjectMFAFatigue(m365sim.MFAFatigue{
		User: v.ID, IPAddress: bomberIP, Denied: 1, ReportFraud: true, End: logged(), City: "Amsterdam", CountryOrRegion: "NL",
	})
	if err != nil {
		return err
	}
	a.facts.SourceIP = bomberIP
	a.say("an attacker holding %s's password signs in from %s; %s declines the MFA prompt and reports it as fraud (sign-in %s)",
		v.UserPrincipalName, bomberIP, v.DisplayName, denied[len(denied)-1].ID)
	return nil
}

func passwordSpraySuccess(_ context.Context, a *attacker) error {
	v := a.victim
	// Medium: a high detection would also fire high-risk-user.
	det := a.tenant.InjectRiskDetection(m365sim.RiskDetection{
		UserID: v.ID, UserPrincipalName: v.UserPrincipalName, UserDisplayName: v.DisplayName,
		RiskEventType: "passwordSpray", RiskLevel: "medium", DetectionTimingType: "offline", IPAddress: sprayIP,
		City: "Chisinau", CountryOrRegion: "MD",
	})
	a.facts.SourceIP = sprayIP
	a.say("Identity Protection ties %s to a password spray from %s that guessed the password: detection %s (%s)",
		v.UserPrincipalName, sprayIP, det.ID, det.RiskEventType)
	return nil
}

func anonymousSignIn(_ context.Context, a *attacker) error {
	v := a.victim
	si := a.tenant.InjectSignIn(m365sim.SignIn{
		UserID: v.ID, IPAddress: torExitIP, AppDisplayName: "OfficeHome", AppID: "4765445b-32c6-49b0-83e6-1d93765276ca",
		RiskLevelDuringSignIn: "medium", RiskEventTypes: []string{"anonymizedIPAddress"},
		Browser: "Firefox 128.0", OperatingSystem: "Linux", CreatedDateTime: logged(),
	})
	a.facts.SourceIP = torExitIP
	a.say("someone signs in as %s to %s from the Tor exit %s; Identity Protection flags the sign-in %s (anonymizedIPAddress, risk medium)",
		v.UserPrincipalName, si.AppDisplayName, torExitIP, si.ID)
	return nil
}

// checkTenant looks in the tenant for the effect of one step: facts to print,
// and problems when the effect is missing.
func checkTenant(t *m365sim.Tenant, victim m365sim.User, atk Attack, st *stepState) (facts, problems []string) {
	target := victim.ID
	if st.final != nil && st.final.Target["user"] != "" {
		target = st.final.Target["user"]
	} else if st.pending != nil && st.pending.Target["user"] != "" {
		target = st.pending.Target["user"]
	}
	u, ok := t.User(target)
	if !ok {
		u = victim
	}
	if facts, problems, ok := checkDefender(t, atk, st); ok {
		return facts, problems
	}
	switch st.step.Action {
	case actions.DisableUser:
		if u.AccountEnabled {
			problems = append(problems, "the account is still enabled")
		}
		if u.ID != victim.ID {
			facts = append(facts, fmt.Sprintf("%s accountEnabled=%t", u.UserPrincipalName, u.AccountEnabled))
		}
	case actions.RevokeSessions:
		if u.RevokeCount == 0 {
			problems = append(problems, "sign-in sessions were not revoked")
		}
		if u.ID != victim.ID {
			facts = append(facts, fmt.Sprintf("%s sign-in sessions revoked %d time(s)", u.UserPrincipalName, u.RevokeCount))
		}
	case actions.ResetPassword:
		facts = append(facts, fmt.Sprintf("%s password reset %d time(s), change forced at next sign-in: %t", u.UserPrincipalName, u.PasswordChanges, u.ForceChangePasswordNextSignIn))
		if u.PasswordChanges == 0 {
			problems = append(problems, "the password was not reset")
		}
	case actions.DeleteForwardRules, actions.DisableForwardRules:
		rules := t.MessageRules(u.ID)
		var names []string
		attackerRule, kept := false, atk.KeptRuleID == ""
		for _, r := range rules {
			id, _ := r["id"].(string)
			name, _ := r["displayName"].(string)
			on, _ := r["isEnabled"].(bool)
			names = append(names, fmt.Sprintf("%q (enabled=%t)", name, on))
			if id == atk.RuleID && (st.step.Action == actions.DeleteForwardRules || on) {
				attackerRule = true
			}
			if id == atk.KeptRuleID && on {
				kept = true
			}
		}
		facts = append(facts, fmt.Sprintf("inbox rules of %s: %s", u.UserPrincipalName, orNone(names)))
		if atk.RuleID != "" && attackerRule {
			problems = append(problems, fmt.Sprintf("the attacker's forwarding rule is still active in %s's mailbox", u.UserPrincipalName))
		}
		if !kept {
			problems = append(problems, "the user's own internal forwarding rule was removed too")
		}
	case "remove_mailbox_forwarding":
		fwd := u.ForwardingSmtpAddress
		if fwd == "" {
			fwd = "none"
		}
		facts = append(facts, fmt.Sprintf("mailbox forwarding of %s: %s", u.UserPrincipalName, fwd))
		if u.ForwardingSmtpAddress != "" {
			problems = append(problems, "the mailbox still forwards to "+u.ForwardingSmtpAddress)
		}
	case actions.BlockIP:
		facts = append(facts, "blocked by Conditional Access: "+orNone(blockedRanges(t)))
		if st.final == nil {
			break
		}
		if _, until, ok := strings.Cut(st.final.Detail, "unblocks automatically at "); ok {
			facts = append(facts, "the block lifts itself at "+until)
		}
		problems = append(problems, checkBlocked(t, st.final.Target["ip"], atk.SourceIP)...)
	case actions.ConfirmCompromised:
		ru, _ := t.RiskyUser(u.ID)
		state, _ := ru["riskState"].(string)
		facts = append(facts, fmt.Sprintf("%s Identity Protection risk state: %s", u.UserPrincipalName, orDash(state)))
		if state != "confirmedCompromised" {
			problems = append(problems, "the user is not confirmed compromised")
		}
	}
	return facts, problems
}

// blockedRanges are the CIDRs of the tenant's IP named locations.
func blockedRanges(t *m365sim.Tenant) []string {
	var out []string
	for _, l := range t.NamedLocations() {
		rs, _ := l["ipRanges"].([]any)
		for _, r := range rs {
			if m, ok := r.(map[string]any); ok {
				if c, _ := m["cidrAddress"].(string); c != "" {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// checkBlocked says what is wrong with a block_ip of target against the
// attack's source address.
func checkBlocked(t *m365sim.Tenant, target, source string) []string {
	pfx, err := actions.ParseIPTarget(target)
	if err != nil {
		return []string{fmt.Sprintf("block_ip target %q: %v", target, err)}
	}
	var problems []string
	if src, err := netip.ParseAddr(source); err == nil && !pfx.Contains(src) {
		problems = append(problems, fmt.Sprintf("block_ip blocked %s, not the attack's source %s", pfx, source))
	}
	if !slices.Contains(blockedRanges(t), pfx.String()) {
		problems = append(problems, fmt.Sprintf("no named location blocks %s", pfx))
	}
	return problems
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// anonymousDetection is the anonymous-IP incident as the detection feed
// reports it: a medium-risk anonymizedIPAddress detection of a sign-in.
func anonymousDetection(_ context.Context, a *attacker) error {
	v := a.victim
	det := a.tenant.InjectRiskDetection(m365sim.RiskDetection{
		UserID: v.ID, UserPrincipalName: v.UserPrincipalName, UserDisplayName: v.DisplayName,
		RiskEventType: "anonymizedIPAddress", RiskLevel: "medium", IPAddress: torExitIP, Activity: "signin",
		AdditionalInfo: `[{"Key":"userAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"}]`,
	})
	a.facts.SourceIP = det.IPAddress
	a.say("Identity Protection reports a sign-in of %s from the Tor exit %s: detection %s (%s, risk %s)",
		v.UserPrincipalName, det.IPAddress, det.ID, det.RiskEventType, det.RiskLevel)
	return nil
}
