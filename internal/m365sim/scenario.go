package m365sim

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// ForwardingRule is an attacker's inbox rule (New-InboxRule from OWA/PowerShell).
type ForwardingRule struct {
	User            string    `json:"user"` // id or UPN of the mailbox
	RuleName        string    `json:"ruleName,omitempty"`
	ForwardTo       []string  `json:"forwardTo"`
	Kind            string    `json:"kind,omitempty"` // ForwardTo (default), RedirectTo, ForwardAsAttachmentTo
	SubjectContains []string  `json:"subjectContains,omitempty"`
	DeleteMessage   bool      `json:"deleteMessage,omitempty"`
	MarkAsRead      bool      `json:"markAsRead,omitempty"`
	MoveToFolder    string    `json:"moveToFolder,omitempty"`
	ClientIP        string    `json:"clientIp,omitempty"`
	Time            time.Time `json:"time"`
}

// MailboxForwarding is Set-Mailbox -ForwardingSmtpAddress.
type MailboxForwarding struct {
	User                       string    `json:"user"`
	Actor                      string    `json:"actor,omitempty"` // UPN of who ran it (default: the user)
	ForwardingSmtpAddress      string    `json:"forwardingSmtpAddress"`
	DeliverToMailboxAndForward bool      `json:"deliverToMailboxAndForward,omitempty"`
	ClientIP                   string    `json:"clientIp,omitempty"`
	Time                       time.Time `json:"time"`
}

// Phish is one phishing message delivered to many mailboxes.
type Phish struct {
	FromAddress       string    `json:"fromAddress"`
	FromName          string    `json:"fromName,omitempty"`
	Subject           string    `json:"subject"`
	Body              string    `json:"body,omitempty"`
	InternetMessageID string    `json:"internetMessageId,omitempty"`
	Recipients        []string  `json:"recipients,omitempty"` // empty = every mailbox
	ReceivedDateTime  time.Time `json:"receivedDateTime"`
}

func randPort() int {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return 49152 + int(binary.BigEndian.Uint16(b[:]))%16000
}

// withPort formats an Exchange ClientIP: ip:port, IPv6 as [ip]:port.
func withPort(ip string) string {
	if ip == "" {
		return ""
	}
	return net.JoinHostPort(ip, fmt.Sprint(randPort()))
}

func (t *Tenant) exchangeAdminRecord(at time.Time, op string, u *userRec, actorUPN, clientIP string, params [][2]string, objectID string) map[string]any {
	rec := t.baseRecord(at, 1, op, actorUPN, "Exchange", "True")
	ps := make([]any, 0, len(params))
	for _, p := range params {
		ps = append(ps, map[string]any{"Name": p[0], "Value": p[1]})
	}
	rec["UserKey"] = strings.ToUpper(strings.ReplaceAll(u.ID, "-", "")[:16])
	rec["UserType"] = 2
	rec["ClientIP"] = withPort(clientIP)
	rec["ObjectId"] = objectID
	rec["AppId"] = "00000002-0000-0ff1-ce00-000000000000"
	rec["ClientAppId"] = ""
	rec["ExternalAccess"] = false
	rec["OrganizationName"] = "contoso.onmicrosoft.com"
	rec["OriginatingServer"] = "AM0PR10MB2387 (15.20.7472.010)"
	rec["Parameters"] = ps
	rec["SessionId"] = newGUID()
	rec["RequestId"] = newGUID()
	rec["TokenObjectId"] = u.ID
	rec["TokenTenantId"] = t.opts.TenantID
	return rec
}

func boolStr(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// InjectForwardingRule creates the rule in the mailbox (visible to Graph at
// once) and an Audit.Exchange New-InboxRule record visible after
// AvailabilityDelay. It returns the rule id and the audit record id.
func (t *Tenant) InjectForwardingRule(f ForwardingRule) (ruleID, recordID string, err error) {
	if len(f.ForwardTo) == 0 {
		return "", "", fmt.Errorf("m365sim: forwarding rule needs at least one recipient")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(f.User)
	if u == nil || u.mbox == nil {
		return "", "", fmt.Errorf("m365sim: no mailbox %q", f.User)
	}
	if f.RuleName == "" {
		f.RuleName = "."
	}
	kind := strings.ToLower(f.Kind)
	param, action := "ForwardTo", "forwardTo"
	switch kind {
	case "redirectto":
		param, action = "RedirectTo", "redirectTo"
	case "forwardasattachmentto":
		param, action = "ForwardAsAttachmentTo", "forwardAsAttachmentTo"
	}
	var recips []any
	for _, a := range f.ForwardTo {
		recips = append(recips, map[string]any{"emailAddress": map[string]any{"name": a, "address": a}})
	}
	actions := map[string]any{action: recips, "stopProcessingRules": true}
	if f.DeleteMessage {
		actions["delete"] = true
	}
	if f.MarkAsRead {
		actions["markAsRead"] = true
	}
	if f.MoveToFolder != "" {
		actions["moveToFolder"] = folderID(strings.ToLower(strings.ReplaceAll(f.MoveToFolder, " ", "")))
	}
	body := map[string]any{"displayName": f.RuleName, "isEnabled": true, "actions": actions}
	if len(f.SubjectContains) > 0 {
		body["conditions"] = map[string]any{"subjectContains": f.SubjectContains}
	}
	o := t.addRuleLocked(u, body)
	params := [][2]string{{"AlwaysDeleteOutlookRulesBlob", "False"}, {"Force", "False"}, {"Name", f.RuleName},
		{param, strings.Join(f.ForwardTo, ";")}, {"StopProcessingRules", "True"}}
	if len(f.SubjectContains) > 0 {
		params = append(params, [2]string{"SubjectContainsWords", strings.Join(f.SubjectContains, ";")})
	}
	if f.DeleteMessage {
		params = append(params, [2]string{"DeleteMessage", "True"})
	}
	if f.MarkAsRead {
		params = append(params, [2]string{"MarkAsRead", "True"})
	}
	if f.MoveToFolder != "" {
		params = append(params, [2]string{"MoveToFolder", f.MoveToFolder})
	}
	at := f.Time
	if at.IsZero() {
		at = t.now()
	}
	obj := fmt.Sprintf("EURPR10A001.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/%s\\%s", u.ID, f.RuleName)
	rec := t.exchangeAdminRecord(at, "New-InboxRule", u, u.UserPrincipalName, firstNonEmpty(f.ClientIP, "203.0.113.66"), params, obj)
	t.addRecordsLocked("Audit.Exchange", t.now().Add(t.opts.AvailabilityDelay), rec)
	return str(o, "id"), str(rec, "Id"), nil
}

// InjectMailboxForwarding sets mailbox forwarding and records Set-Mailbox.
func (t *Tenant) InjectMailboxForwarding(m MailboxForwarding) (recordID string, err error) {
	if m.ForwardingSmtpAddress == "" {
		return "", fmt.Errorf("m365sim: forwarding address required")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(m.User)
	if u == nil || u.mbox == nil {
		return "", fmt.Errorf("m365sim: no mailbox %q", m.User)
	}
	addr := m.ForwardingSmtpAddress
	if !strings.HasPrefix(strings.ToLower(addr), "smtp:") {
		addr = "smtp:" + addr
	}
	u.ForwardingSmtpAddress = addr
	u.DeliverToMailboxAndForward = m.DeliverToMailboxAndForward
	at := m.Time
	if at.IsZero() {
		at = t.now()
	}
	params := [][2]string{{"Identity", u.ID}, {"ForwardingSmtpAddress", addr}, {"DeliverToMailboxAndForward", boolStr(m.DeliverToMailboxAndForward)}}
	rec := t.exchangeAdminRecord(at, "Set-Mailbox", u, firstNonEmpty(m.Actor, u.UserPrincipalName), firstNonEmpty(m.ClientIP, "203.0.113.66"), params, u.ID)
	t.addRecordsLocked("Audit.Exchange", t.now().Add(t.opts.AvailabilityDelay), rec)
	return str(rec, "Id"), nil
}

// InjectPhishing delivers one message to many mailboxes (every mailbox when
// Recipients is empty). It returns the message id per mailbox UPN.
func (t *Tenant) InjectPhishing(p Phish) (map[string]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.InternetMessageID == "" {
		p.InternetMessageID = "<" + strings.ReplaceAll(newGUID(), "-", "") + "@" + domainOf(firstNonEmpty(p.FromAddress, "x@phish.example")) + ">"
	}
	var targets []*userRec
	if len(p.Recipients) == 0 {
		for _, id := range t.st.userOrder {
			if u := t.st.users[id]; u.mbox != nil {
				targets = append(targets, u)
			}
		}
	} else {
		for _, r := range p.Recipients {
			u := t.st.userLocked(r)
			if u == nil || u.mbox == nil {
				return nil, fmt.Errorf("m365sim: no mailbox %q", r)
			}
			targets = append(targets, u)
		}
	}
	out := map[string]string{}
	for _, u := range targets {
		m := t.newMessageLocked(u, Message{InternetMessageID: p.InternetMessageID, Subject: p.Subject, FromName: p.FromName,
			FromAddress: p.FromAddress, Body: p.Body, BodyHTML: true, ReceivedDateTime: p.ReceivedDateTime}, time.Time{})
		out[u.UserPrincipalName] = str(m.obj, "id")
	}
	return out, nil
}

func domainOf(addr string) string {
	_, d, ok := strings.Cut(addr, "@")
	if !ok {
		return "example.invalid"
	}
	return d
}

// ---- admin routes for injection and raw data ----

func (t *Tenant) adminMore(r *req, j func(int, any) *resp, bad func(string) *resp, decode func(any) bool) *resp {
	s := r.segs
	path := strings.Join(s, "/")
	if r.method != http.MethodPost && r.method != http.MethodPut {
		return nil
	}
	raw := json.RawMessage(r.body)
	fail := func(err error) *resp { return bad(err.Error()) }
	switch path {
	case "inject/forwardingRule":
		var f ForwardingRule
		if !decode(&f) {
			return bad("body must be a ForwardingRule")
		}
		rid, rec, err := t.InjectForwardingRule(f)
		if err != nil {
			return fail(err)
		}
		return j(201, map[string]string{"ruleId": rid, "recordId": rec})
	case "inject/mailboxForwarding":
		var m MailboxForwarding
		if !decode(&m) {
			return bad("body must be a MailboxForwarding")
		}
		rec, err := t.InjectMailboxForwarding(m)
		if err != nil {
			return fail(err)
		}
		return j(201, map[string]string{"recordId": rec})
	case "inject/signIn":
		var si SignIn
		if !decode(&si) {
			return bad("body must be a SignIn")
		}
		return j(201, t.InjectSignIn(si))
	case "inject/phishing":
		var p Phish
		if !decode(&p) {
			return bad("body must be a Phish")
		}
		ids, err := t.InjectPhishing(p)
		if err != nil {
			return fail(err)
		}
		return j(201, ids)
	case "graph/riskDetections":
		if err := t.AddRawRiskDetection(raw); err != nil {
			return fail(err)
		}
		return noContent()
	case "graph/riskyUsers":
		if err := t.AddRawRiskyUser(raw); err != nil {
			return fail(err)
		}
		return noContent()
	case "graph/signIns":
		if err := t.AddRawSignIn(raw); err != nil {
			return fail(err)
		}
		return noContent()
	case "graph/namedLocations":
		if err := t.AddRawNamedLocation(raw); err != nil {
			return fail(err)
		}
		return noContent()
	case "graph/policies":
		if err := t.AddRawPolicy(raw); err != nil {
			return fail(err)
		}
		return noContent()
	case "audit/blobs":
		id, err := t.AddAuditBlob(r.q("contentType"), r.body)
		if err != nil {
			return fail(err)
		}
		return j(201, map[string]string{"contentId": id})
	case "audit/records":
		var recs []json.RawMessage
		if !decode(&recs) {
			return bad("body must be a JSON array of records")
		}
		id, err := t.AddAuditRecords(r.q("contentType"), recs)
		if err != nil {
			return fail(err)
		}
		return j(201, map[string]string{"contentId": id})
	case "contentPageSize":
		var n int
		if !decode(&n) {
			return bad("body must be a number")
		}
		t.SetContentPageSize(n)
		return noContent()
	case "premium":
		var b struct {
			Enabled bool `json:"enabled"`
		}
		if !decode(&b) {
			return bad(`body must be {"enabled":bool}`)
		}
		t.SetPremium(b.Enabled)
		return noContent()
	}
	if len(s) == 4 && s[0] == "graph" && s[1] == "users" {
		var id string
		var err error
		switch s[3] {
		case "messages":
			id, err = t.AddRawMessage(s[2], raw)
		case "messageRules":
			id, err = t.AddRawMessageRule(s[2], raw)
		default:
			return nil
		}
		if err != nil {
			return fail(err)
		}
		return j(201, map[string]string{"id": id})
	}
	return nil
}

// MFAFatigue is MFA push bombing: the attacker holds the user's password and
// signs in again and again, so that the user's authenticator keeps prompting
// until the user gives in. InjectMFAFatigue records the declined prompts; the
// prompt the user finally accepts is an ordinary successful sign-in
// (InjectSignIn from the same address).
type MFAFatigue struct {
	User      string `json:"user"`                // id or UPN of the targeted user
	IPAddress string `json:"ipAddress,omitempty"` // the attacker's address (default 203.0.113.80)
	// Denied is how many prompts the user declines (default 10).
	Denied int `json:"denied,omitempty"`
	// ReportFraud makes the user report the last declined prompt as fraud.
	ReportFraud bool `json:"reportFraud,omitempty"`
	// Gap separates the prompts (default 15s); End is the last one (default now).
	Gap             time.Duration `json:"gap,omitempty"`
	End             time.Time     `json:"end"`
	City            string        `json:"city,omitempty"`
	CountryOrRegion string        `json:"countryOrRegion,omitempty"`
}

// MFA denial texts as the sign-in log words them (status.additionalDetails).
const (
	MFADeclined = "MFA denied; user declined the authentication"
	MFAFraud    = "MFA denied; user reported fraud"
)

// InjectMFAFatigue records Denied sign-ins failing at MFA (500121), oldest
// first and Gap apart up to End, each visible after AvailabilityDelay. It
// returns them in that order.
func (t *Tenant) InjectMFAFatigue(m MFAFatigue) ([]SignIn, error) {
	if m.Denied <= 0 {
		m.Denied = 10
	}
	if m.Denied > 1000 {
		return nil, fmt.Errorf("m365sim: at most 1000 MFA prompts, not %d", m.Denied)
	}
	if m.Gap <= 0 {
		m.Gap = 15 * time.Second
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(m.User)
	if u == nil {
		return nil, fmt.Errorf("m365sim: no user %q", m.User)
	}
	end := m.End
	if end.IsZero() {
		end = t.now()
	}
	visible := t.now().Add(t.opts.AvailabilityDelay)
	out := make([]SignIn, 0, m.Denied)
	for i := range m.Denied {
		details := MFADeclined
		if m.ReportFraud && i == m.Denied-1 {
			details = MFAFraud
		}
		s := t.injectSignInLocked(SignIn{
			UserID: u.ID, IPAddress: firstNonEmpty(m.IPAddress, "203.0.113.80"), City: m.City, CountryOrRegion: m.CountryOrRegion,
			ErrorCode: 500121, FailureReason: "Authentication failed during strong authentication request.",
			CreatedDateTime: end.Add(-time.Duration(m.Denied-1-i) * m.Gap),
		}, visible)
		t.setSignInDetailsLocked(s.ID, details)
		out = append(out, s)
	}
	return out, nil
}

// setSignInDetailsLocked sets status.additionalDetails of a stored sign-in.
func (t *Tenant) setSignInDetailsLocked(id, details string) {
	for i := len(t.st.signIns) - 1; i >= 0; i-- {
		it := t.st.signIns[i]
		if str(it.obj, "id") != id {
			continue
		}
		if st, ok := it.obj["status"].(map[string]any); ok {
			st["additionalDetails"] = details
		}
		return
	}
}

// PasswordSpray is one password tried against many accounts from one address.
type PasswordSpray struct {
	IPAddress string   `json:"ipAddress,omitempty"` // default 203.0.113.199
	Users     []string `json:"users"`               // ids or UPNs tried
	// Gap separates the attempts (default 2s); End is the last one (default now).
	Gap             time.Duration `json:"gap,omitempty"`
	End             time.Time     `json:"end"`
	City            string        `json:"city,omitempty"`
	CountryOrRegion string        `json:"countryOrRegion,omitempty"`
}

// InjectPasswordSpray records one failed sign-in per user, oldest first and
// Gap apart up to End: a wrong password (50126) for a user of the directory,
// an unknown account (50034) for any other name. The successful guess, if
// any, is an ordinary sign-in (InjectSignIn from the same address).
func (t *Tenant) InjectPasswordSpray(p PasswordSpray) ([]SignIn, error) {
	if len(p.Users) == 0 {
		return nil, fmt.Errorf("m365sim: a password spray needs at least one user")
	}
	if len(p.Users) > 10000 {
		return nil, fmt.Errorf("m365sim: at most 10000 sprayed users, not %d", len(p.Users))
	}
	if p.Gap <= 0 {
		p.Gap = 2 * time.Second
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	end := p.End
	if end.IsZero() {
		end = t.now()
	}
	visible := t.now().Add(t.opts.AvailabilityDelay)
	out := make([]SignIn, 0, len(p.Users))
	for i, name := range p.Users {
		s := SignIn{IPAddress: firstNonEmpty(p.IPAddress, "203.0.113.199"), City: p.City, CountryOrRegion: p.CountryOrRegion,
			ErrorCode: 50126, CreatedDateTime: end.Add(-time.Duration(len(p.Users)-1-i) * p.Gap)}
		if u := t.st.userLocked(name); u != nil {
			s.UserID = u.ID
		} else {
			s.UserPrincipalName = name
			s.ErrorCode = 50034
			s.FailureReason = "The user account does not exist in the directory. To sign into this application, the account must be added to the directory."
		}
		out = append(out, t.injectSignInLocked(s, visible))
	}
	return out, nil
}
