package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Defender XDR alerts through Microsoft Graph: GET /security/alerts_v2
// (https://learn.microsoft.com/graph/api/security-list-alerts_v2), with the
// application permission SecurityAlert.Read.All (or SecurityAlert.ReadWrite.All).
// As the page documents: $filter on assignedTo, classification,
// determination, createdDateTime, lastUpdateDateTime, severity, serviceSource
// and status; $top and $skip; "Use @odata.nextLink for pagination" (the link
// carries $skip, as the page's example "GET /security/alerts_V2?$top=100&$skip=200").
// The page documents no maximum $top; the emulator caps a page at 2,000.
// Alert objects and their evidence follow
// https://learn.microsoft.com/graph/api/resources/security-alert and the
// evidence types' pages (deviceEvidence.mdeDeviceId, fileEvidence.fileDetails,
// urlEvidence.url, ipEvidence.ipAddress, userEvidence.userAccount,
// mailboxEvidence.primaryAddress, analyzedMessageEvidence.networkMessageId /
// internetMessageId / p1Sender / urls). An alert that changes gets a new
// lastUpdateDateTime (UpdateAlert), which is how a poller sees it again.

var permAlerts = anyOf("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")

func alertRoutes() []route {
	return []route{
		{http.MethodGet, "security/alerts_v2", permAlerts, thrNone, (*Tenant).listAlerts},
		{http.MethodGet, "security/alerts_v2/{}", permAlerts, thrNone, (*Tenant).getAlert},
	}
}

// alertSchema: the filterable properties the List alerts_v2 page names.
func alertSchema() *schema {
	enum := fEq | fNe | fIn
	return newSchema("microsoft.graph.security.alert", "", famOther, map[string]fops{
		"assignedTo": fEq | fNe, "classification": enum, "determination": enum, "createdDateTime": fCmp,
		"lastUpdateDateTime": fCmp, "severity": enum, "serviceSource": enum, "status": enum,
		"id": fSel, "title": fSel, "category": fSel, "detectionSource": fSel, "evidence": fSel, "tenantId": fSel,
		"incidentId": fSel, "providerAlertId": fSel, "description": fSel, "mitreTechniques": fSel,
	}, nil)
}

// AlertSpec describes an alert to inject: its classification and the evidence
// it names (empty fields are left out of the evidence).
type AlertSpec struct {
	ID              string // default: a "da…" id as Defender for Endpoint makes them
	Title           string
	Severity        string // default high
	Status          string // default new
	Category        string // e.g. Ransomware, InitialAccess, CommandAndControl
	ServiceSource   string // default microsoftDefenderForEndpoint
	DetectionSource string // default microsoftDefenderForEndpoint
	// Device evidence: a Defender machine id (40 hex) and its DNS name.
	DeviceID, DeviceName string
	// File evidence.
	SHA256, SHA1, FileName string
	// URL and IP evidence.
	URL, IP string
	// User evidence (UPN and Entra object id) and mailbox evidence.
	UserUPN, UserID, Mailbox string
	// An analysed message: its P1 sender, internet and network message ids
	// (recipient: Mailbox).
	Sender, InternetMessageID, NetworkMessageID string
	Created                                     time.Time // default now
}

func (t *Tenant) alertObj(a AlertSpec, created, updated time.Time) map[string]any {
	ts := graphTime(created)
	ev := func(typ string, m map[string]any) map[string]any {
		m["@odata.type"] = "#microsoft.graph.security." + typ
		m["createdDateTime"] = ts
		m["verdict"] = "suspicious"
		m["remediationStatus"] = "none"
		m["remediationStatusDetails"] = nil
		m["roles"] = []any{}
		m["detailedRoles"] = []any{}
		m["tags"] = []any{}
		return m
	}
	var evidence []any
	if a.DeviceID != "" || a.DeviceName != "" {
		evidence = append(evidence, ev("deviceEvidence", map[string]any{"mdeDeviceId": a.DeviceID, "deviceDnsName": a.DeviceName,
			"azureAdDeviceId": nil, "osPlatform": "Windows11", "healthStatus": "active", "onboardingStatus": "onboarded", "riskScore": "high",
			"ipInterfaces": []any{}, "loggedOnUsers": []any{}}))
	}
	if a.SHA256 != "" || a.SHA1 != "" {
		evidence = append(evidence, ev("fileEvidence", map[string]any{"detectionStatus": "detected", "mdeDeviceId": a.DeviceID,
			"fileDetails": map[string]any{"sha256": a.SHA256, "sha1": a.SHA1, "fileName": a.FileName, "filePath": "C:\\Users\\Public", "fileSize": 318976}}))
	}
	if a.UserUPN != "" || a.UserID != "" {
		evidence = append(evidence, ev("userEvidence", map[string]any{"userAccount": map[string]any{
			"accountName": strings.Split(a.UserUPN, "@")[0], "userPrincipalName": a.UserUPN, "azureAdUserId": a.UserID, "displayName": ""}}))
	}
	if a.Mailbox != "" {
		evidence = append(evidence, ev("mailboxEvidence", map[string]any{"primaryAddress": a.Mailbox, "displayName": "",
			"userAccount": map[string]any{"userPrincipalName": a.Mailbox, "azureAdUserId": a.UserID}}))
	}
	if a.Sender != "" || a.InternetMessageID != "" || a.NetworkMessageID != "" {
		urls := []any{}
		if a.URL != "" {
			urls = append(urls, a.URL)
		}
		dom := ""
		if i := strings.LastIndexByte(a.Sender, '@'); i >= 0 {
			dom = a.Sender[i+1:]
		}
		evidence = append(evidence, ev("analyzedMessageEvidence", map[string]any{"networkMessageId": a.NetworkMessageID,
			"internetMessageId": a.InternetMessageID, "recipientEmailAddress": a.Mailbox, "senderIp": a.IP, "urls": urls, "urlCount": len(urls),
			"p1Sender":       map[string]any{"emailAddress": a.Sender, "displayName": "", "domainName": dom},
			"p2Sender":       map[string]any{"emailAddress": a.Sender, "displayName": "", "domainName": dom},
			"deliveryAction": "delivered", "deliveryLocation": "inbox", "antiSpamDirection": "inbound"}))
	}
	if a.URL != "" {
		evidence = append(evidence, ev("urlEvidence", map[string]any{"url": a.URL}))
	}
	if a.IP != "" {
		evidence = append(evidence, ev("ipEvidence", map[string]any{"ipAddress": a.IP, "countryLetterCode": nil}))
	}
	if evidence == nil {
		evidence = []any{}
	}
	tid := t.opts.TenantID
	return map[string]any{
		"@odata.type": "#microsoft.graph.security.alert",
		"id":          a.ID, "providerAlertId": strings.TrimPrefix(a.ID, "da"), "incidentId": fmt.Sprint(1000 + len(a.ID)),
		"status": a.Status, "severity": a.Severity, "classification": nil, "determination": nil,
		"serviceSource": a.ServiceSource, "detectionSource": a.DetectionSource, "detectorId": newGUID(), "tenantId": tid,
		"title": a.Title, "description": a.Title + ".", "recommendedActions": "", "category": a.Category, "assignedTo": nil,
		"alertWebUrl":      "https://security.microsoft.com/alerts/" + a.ID + "?tid=" + tid,
		"incidentWebUrl":   "https://security.microsoft.com/incidents/1?tid=" + tid,
		"actorDisplayName": nil, "threatDisplayName": nil, "threatFamilyName": nil, "mitreTechniques": []any{},
		"createdDateTime": ts, "lastUpdateDateTime": graphTime(updated), "resolvedDateTime": nil,
		"firstActivityDateTime": ts, "lastActivityDateTime": ts, "comments": []any{}, "systemTags": []any{},
		"evidence": evidence,
	}
}

// InjectAlert adds a Defender XDR alert, visible at once, and returns its id.
func (t *Tenant) InjectAlert(a AlertSpec) string {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	now := t.now()
	if a.Created.IsZero() {
		a.Created = now
	}
	def(&a.ID, "da"+strings.ReplaceAll(newGUID(), "-", "")[:18]+"_"+fmt.Sprint(now.UnixNano()%1_000_000_000))
	def(&a.Title, "Suspicious activity")
	def(&a.Severity, "high")
	def(&a.Status, "new")
	def(&a.Category, "SuspiciousActivity")
	def(&a.ServiceSource, "microsoftDefenderForEndpoint")
	def(&a.DetectionSource, "microsoftDefenderForEndpoint")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.alerts = append(t.st.alerts, &item{obj: t.alertObj(a, a.Created, now), seq: t.st.nextSeq()})
	return a.ID
}

// UpdateAlert sets an alert's status (new, inProgress, resolved) and moves its
// lastUpdateDateTime to now, as the service does on any change.
func (t *Tenant) UpdateAlert(id, status string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range t.st.alerts {
		if str(it.obj, "id") == id {
			it.obj["status"] = status
			it.obj["lastUpdateDateTime"] = graphTime(t.now())
			return true
		}
	}
	return false
}

// AddRawAlert stores a Graph security alert object as given (a published
// payload), visible at once.
func (t *Tenant) AddRawAlert(obj json.RawMessage) error {
	m := decodeObj(obj)
	if m == nil {
		return fmt.Errorf("m365sim: alert is not a JSON object")
	}
	t.mu.Lock()
	t.st.alerts = append(t.st.alerts, &item{obj: m, seq: t.st.nextSeq()})
	t.mu.Unlock()
	return nil
}

func (t *Tenant) listAlerts(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.alerts))
	// "The most recent alerts are displayed at the top of the list."
	for i := len(t.st.alerts) - 1; i >= 0; i-- {
		items = append(items, &item{obj: cloneObj(t.st.alerts[i].obj)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: "security/alerts_v2", defTop: 2000, maxTop: 2000, useSkip: true, schema: alertSchema(),
		topError: func(r *req, top string) *resp {
			return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid $top value '%s'.", top))
		}})
}

func (t *Tenant) getAlert(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range t.st.alerts {
		if str(it.obj, "id") == p[0] {
			o := cloneObj(it.obj)
			o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2/$entity"
			return jsonResp(http.StatusOK, o)
		}
	}
	return t.graphError(r, http.StatusNotFound, "NotFound", "The requested alert was not found.")
}
