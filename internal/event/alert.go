package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Alert is what playbooks need from a Microsoft Graph security alert
// (GET /security/alerts_v2: https://learn.microsoft.com/graph/api/resources/security-alert)
// and its evidence
// (https://learn.microsoft.com/graph/api/resources/security-alertevidence):
// the alert's own classification, and every user, device, address, file,
// URL, mailbox and message its evidence names, de-duplicated in the order
// Microsoft listed them. The envelope's User, UserID, IP and Mailbox are the
// first of each; the playbook fields device, sha256, sha1, url, domain,
// sender, message_id, network_message_id, severity, category,
// service_source and detection_source read the first of each here.
type Alert struct {
	Title    string `json:"title,omitempty"`
	Severity string `json:"severity,omitempty"` // informational, low, medium, high
	Status   string `json:"status,omitempty"`   // new, inProgress, resolved
	// Category is the MITRE ATT&CK tactic or Microsoft's category
	// (InitialAccess, Ransomware, DefenseEvasion, SuspiciousActivity…).
	Category string `json:"category,omitempty"`
	// ServiceSource is the product (microsoftDefenderForEndpoint,
	// microsoftDefenderForOffice365…); DetectionSource the detection
	// technology (antivirus, customTi, automatedInvestigation…).
	ServiceSource   string `json:"service_source,omitempty"`
	DetectionSource string `json:"detection_source,omitempty"`
	Classification  string `json:"classification,omitempty"`
	Determination   string `json:"determination,omitempty"`
	IncidentID      string `json:"incident_id,omitempty"`
	// Devices are Defender for Endpoint machine ids (mdeDeviceId: what
	// isolate_device takes); DeviceNames their DNS names.
	Devices     []string `json:"devices,omitempty"`
	DeviceNames []string `json:"device_names,omitempty"`
	// SHA256 and SHA1 are file hashes (fileEvidence, and processEvidence's
	// image file), lower case.
	SHA256 []string `json:"sha256,omitempty"`
	SHA1   []string `json:"sha1,omitempty"`
	URLs   []string `json:"urls,omitempty"`
	// Domains are the hosts of the URLs.
	Domains []string `json:"domains,omitempty"`
	// IPs are ipEvidence addresses (public or private as Microsoft gave them;
	// never unspecified or broadcast).
	IPs []string `json:"ips,omitempty"`
	// Users are UPNs; UserIDs Entra object ids (userEvidence, mailboxEvidence,
	// processEvidence's account).
	Users   []string `json:"users,omitempty"`
	UserIDs []string `json:"user_ids,omitempty"`
	// Mailboxes are mailboxEvidence primary addresses (and analysed
	// messages' recipients).
	Mailboxes []string `json:"mailboxes,omitempty"`
	// Senders are analysed messages' senders (P1, the envelope sender, else
	// P2, the From header).
	Senders []string `json:"senders,omitempty"`
	// MessageIDs are internet message ids in angle brackets; NetworkMessageIDs
	// Exchange Online's network message ids.
	MessageIDs        []string `json:"message_ids,omitempty"`
	NetworkMessageIDs []string `json:"network_message_ids,omitempty"`
	MitreTechniques   []string `json:"mitre_techniques,omitempty"`
}

// MaxAlertEvidence bounds the evidence items an alert's envelope lists.
const MaxAlertEvidence = 500

type alertUserAccount struct {
	AzureADUserID     string `json:"azureAdUserId"`
	UserPrincipalName string `json:"userPrincipalName"`
}

type alertFile struct {
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
}

type alertSender struct {
	EmailAddress string `json:"emailAddress"`
}

type alertEvidence struct {
	Type            string            `json:"@odata.type"`
	MdeDeviceID     string            `json:"mdeDeviceId"`
	DeviceDNSName   string            `json:"deviceDnsName"`
	FileDetails     *alertFile        `json:"fileDetails"`
	ImageFile       *alertFile        `json:"imageFile"`
	URL             string            `json:"url"`
	IPAddress       string            `json:"ipAddress"`
	UserAccount     *alertUserAccount `json:"userAccount"`
	PrimaryAddress  string            `json:"primaryAddress"`
	UPN             string            `json:"upn"`
	NetworkMsgID    string            `json:"networkMessageId"`
	InternetMsgID   string            `json:"internetMessageId"`
	SenderIP        string            `json:"senderIp"`
	Recipient       string            `json:"recipientEmailAddress"`
	P1Sender        *alertSender      `json:"p1Sender"`
	P2Sender        *alertSender      `json:"p2Sender"`
	URLs            []string          `json:"urls"`
	LoggedOnUsers   []json.RawMessage `json:"loggedOnUsers"`
	AzureADDeviceID string            `json:"azureAdDeviceId"`
}

type alertRecord struct {
	ID                 *string         `json:"id"`
	TenantID           string          `json:"tenantId"`
	Title              string          `json:"title"`
	Severity           string          `json:"severity"`
	Status             string          `json:"status"`
	Category           string          `json:"category"`
	ServiceSource      string          `json:"serviceSource"`
	DetectionSource    string          `json:"detectionSource"`
	Classification     *string         `json:"classification"`
	Determination      *string         `json:"determination"`
	IncidentID         *string         `json:"incidentId"`
	LastUpdateDateTime *string         `json:"lastUpdateDateTime"`
	CreatedDateTime    *string         `json:"createdDateTime"`
	MitreTechniques    []string        `json:"mitreTechniques"`
	Evidence           []alertEvidence `json:"evidence"`
}

var (
	hexRE      = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	alertIDRE  = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,256}$`)
	msgIDLocal = regexp.MustCompile(`^[\x21-\x3b\x3d\x3f-\x7e]{1,994}@[\x21-\x3b\x3d\x3f-\x7e]{1,994}$`)
)

// isAlertShape recognises a Graph security alert (alerts_v2) by its
// members: serviceSource and lastUpdateDateTime (a riskDetection spells it
// lastUpdatedDateTime), or its @odata.type.
func isAlertShape(raw []byte) bool {
	return bytes.Contains(raw, []byte(`"#microsoft.graph.security.alert"`)) ||
		(bytes.Contains(raw, []byte(`"serviceSource"`)) && bytes.Contains(raw, []byte(`"lastUpdateDateTime"`)))
}

// normalizeAlert builds an alert's envelope. The ID is the alert id and its
// lastUpdateDateTime, so that an alert that changes (new evidence, a new
// status) is a new event while a re-poll of the same state deduplicates; the
// kind is the category; the time lastUpdateDateTime (else createdDateTime).
func normalizeAlert(tenantID string, raw json.RawMessage) (Envelope, error) {
	var a alertRecord
	if err := json.Unmarshal(raw, &a); err != nil {
		return Envelope{}, fmt.Errorf("event: alert record: %w: %v", ErrBadField, err)
	}
	if a.ID == nil || strings.TrimSpace(*a.ID) == "" {
		return Envelope{}, fmt.Errorf("event: alert record: %w id", ErrMissingField)
	}
	id := strings.TrimSpace(*a.ID)
	if !alertIDRE.MatchString(id) {
		return Envelope{}, fmt.Errorf("event: alert record: %w id %q", ErrBadField, short(id))
	}
	var ts time.Time
	for _, s := range []*string{a.LastUpdateDateTime, a.CreatedDateTime} {
		if s == nil || strings.TrimSpace(*s) == "" {
			continue
		}
		t, err := parseTime(*s)
		if err != nil {
			return Envelope{}, fmt.Errorf("event: alert record: %w lastUpdateDateTime: %v", ErrBadField, err)
		}
		if !t.IsZero() {
			ts = t
			break
		}
	}
	if ts.IsZero() {
		return Envelope{}, fmt.Errorf("event: alert record: %w lastUpdateDateTime", ErrMissingField)
	}
	ts = ts.UTC()
	al := &Alert{
		Title: clean(a.Title, 512), Severity: clean(a.Severity, 32), Status: clean(a.Status, 32), Category: clean(a.Category, 64),
		ServiceSource: clean(a.ServiceSource, 64), DetectionSource: clean(a.DetectionSource, 64),
		Classification: clean(deref(a.Classification), 64), Determination: clean(deref(a.Determination), 64), IncidentID: clean(deref(a.IncidentID), 64),
	}
	for _, m := range a.MitreTechniques {
		add(&al.MitreTechniques, clean(m, 32))
	}
	for i, ev := range a.Evidence {
		if i >= MaxAlertEvidence {
			break
		}
		al.evidence(ev)
	}
	env := Envelope{
		ID: id + ":" + ts.Format(time.RFC3339Nano), Source: SourceAlert, Kind: KindUnknown, Time: ts, TenantID: tenantID,
		Alert: al, Raw: bytes.Clone(raw),
	}
	if c := kindToken(al.Category); c != "" {
		env.Kind = c
	}
	if isGUID(a.TenantID) {
		env.TenantID = strings.ToLower(a.TenantID)
	}
	if len(al.Users) > 0 {
		env.User = al.Users[0]
	}
	if len(al.UserIDs) > 0 {
		env.UserID = al.UserIDs[0]
	}
	if len(al.IPs) > 0 {
		env.IP = al.IPs[0]
	}
	if len(al.Mailboxes) > 0 {
		env.Mailbox = al.Mailboxes[0]
	}
	return env, nil
}

// evidence adds what one evidence item names.
func (al *Alert) evidence(ev alertEvidence) {
	if d := strings.ToLower(strings.TrimSpace(ev.MdeDeviceID)); len(d) == 40 && hexRE.MatchString(d) {
		add(&al.Devices, d)
	}
	if strings.HasSuffix(ev.Type, "deviceEvidence") {
		add(&al.DeviceNames, clean(strings.ToLower(ev.DeviceDNSName), 255))
	}
	for _, f := range []*alertFile{ev.FileDetails, ev.ImageFile} {
		if f == nil {
			continue
		}
		if h := strings.ToLower(strings.TrimSpace(f.SHA256)); len(h) == 64 && hexRE.MatchString(h) {
			add(&al.SHA256, h)
		}
		if h := strings.ToLower(strings.TrimSpace(f.SHA1)); len(h) == 40 && hexRE.MatchString(h) {
			add(&al.SHA1, h)
		}
	}
	urls := ev.URLs
	if ev.URL != "" {
		urls = append([]string{ev.URL}, urls...)
	}
	for _, u := range urls {
		u = strings.TrimSpace(u)
		if len(u) > 2048 || strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			continue
		}
		add(&al.URLs, u)
		add(&al.Domains, strings.TrimSuffix(strings.ToLower(pu.Hostname()), "."))
	}
	if strings.HasSuffix(ev.Type, "ipEvidence") {
		if a := bareAddr(ev.IPAddress); a.IsValid() && !a.IsUnspecified() && a.String() != "255.255.255.255" {
			add(&al.IPs, a.String())
		}
	}
	if ua := ev.UserAccount; ua != nil {
		if isUPNLike(ua.UserPrincipalName) {
			add(&al.Users, ua.UserPrincipalName)
		}
		if isGUID(ua.AzureADUserID) {
			add(&al.UserIDs, strings.ToLower(ua.AzureADUserID))
		}
	}
	if strings.HasSuffix(ev.Type, "mailboxEvidence") {
		if isUPNLike(ev.UPN) {
			add(&al.Users, ev.UPN)
		}
		if isUPNLike(ev.PrimaryAddress) {
			add(&al.Mailboxes, ev.PrimaryAddress)
		}
	}
	if strings.HasSuffix(ev.Type, "analyzedMessageEvidence") {
		if isUPNLike(ev.Recipient) {
			add(&al.Mailboxes, ev.Recipient)
		}
		for _, s := range []*alertSender{ev.P1Sender, ev.P2Sender} {
			if s != nil && isUPNLike(s.EmailAddress) {
				add(&al.Senders, strings.ToLower(s.EmailAddress))
				break
			}
		}
		if m := strings.TrimSpace(ev.InternetMsgID); m != "" {
			// Microsoft gives it with or without the angle brackets.
			m = strings.TrimSuffix(strings.TrimPrefix(m, "<"), ">")
			if msgIDLocal.MatchString(m) {
				add(&al.MessageIDs, "<"+m+">")
			}
		}
		if n := strings.TrimSpace(ev.NetworkMsgID); isGUID(n) {
			add(&al.NetworkMessageIDs, strings.ToLower(n))
		}
	}
}

// add appends s to *list unless empty or present (case-insensitively).
func add(list *[]string, s string) {
	if s == "" || slices.ContainsFunc(*list, func(x string) bool { return strings.EqualFold(x, s) }) {
		return
	}
	*list = append(*list, s)
}

// clean trims s and drops it if it holds control characters or is longer
// than n.
func clean(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return ""
	}
	return s
}

// kindToken is a category usable as a subject token (letters, digits, -, _).
func kindToken(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return ""
		}
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// AlertField returns the first value of an alert-derived playbook field
// ("" when the event is not an alert or the evidence names none).
func (e *Envelope) AlertField(name string) string {
	a := e.Alert
	if a == nil {
		return ""
	}
	first := func(l []string) string {
		if len(l) == 0 {
			return ""
		}
		return l[0]
	}
	switch name {
	case "device":
		return first(a.Devices)
	case "device_name":
		return first(a.DeviceNames)
	case "sha256":
		return first(a.SHA256)
	case "sha1":
		return first(a.SHA1)
	case "url":
		return first(a.URLs)
	case "domain":
		return first(a.Domains)
	case "sender":
		return first(a.Senders)
	case "message_id":
		return first(a.MessageIDs)
	case "network_message_id":
		return first(a.NetworkMessageIDs)
	case "severity":
		return a.Severity
	case "category":
		return a.Category
	case "service_source":
		return a.ServiceSource
	case "detection_source":
		return a.DetectionSource
	case "title":
		return a.Title
	}
	return ""
}

// AlertFieldNames are the playbook fields AlertField answers.
func AlertFieldNames() []string {
	return []string{"device", "device_name", "sha256", "sha1", "url", "domain", "sender", "message_id",
		"network_message_id", "severity", "category", "service_source", "detection_source", "title"}
}
