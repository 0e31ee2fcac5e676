package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

var permSignIns = anyOf("AuditLog.Read.All")

// SignIn is an interactive sign-in (Graph signIn + the Management Activity
// UserLoggedIn / UserLoginFailed record).
type SignIn struct {
	ID                      string    `json:"id,omitempty"`
	UserID                  string    `json:"userId,omitempty"`
	UserPrincipalName       string    `json:"userPrincipalName,omitempty"`
	UserDisplayName         string    `json:"userDisplayName,omitempty"`
	AppID                   string    `json:"appId,omitempty"`          // default Office 365 Exchange Online
	AppDisplayName          string    `json:"appDisplayName,omitempty"` //
	IPAddress               string    `json:"ipAddress"`
	ClientAppUsed           string    `json:"clientAppUsed,omitempty"` // default Browser
	City                    string    `json:"city,omitempty"`
	State                   string    `json:"state,omitempty"`
	CountryOrRegion         string    `json:"countryOrRegion,omitempty"`
	ErrorCode               int       `json:"errorCode,omitempty"` // 0 = success; 50126 bad password, 50074 MFA required…
	FailureReason           string    `json:"failureReason,omitempty"`
	RiskLevelDuringSignIn   string    `json:"riskLevelDuringSignIn,omitempty"` // default none
	RiskLevelAggregated     string    `json:"riskLevelAggregated,omitempty"`
	RiskState               string    `json:"riskState,omitempty"`
	RiskDetail              string    `json:"riskDetail,omitempty"`
	RiskEventTypes          []string  `json:"riskEventTypes,omitempty"`
	ConditionalAccessStatus string    `json:"conditionalAccessStatus,omitempty"` // default notApplied
	Browser                 string    `json:"browser,omitempty"`
	OperatingSystem         string    `json:"operatingSystem,omitempty"`
	UserAgent               string    `json:"userAgent,omitempty"`
	CreatedDateTime         time.Time `json:"createdDateTime"`
	NonInteractive          bool      `json:"nonInteractive,omitempty"`
	// Late publishes the sign-in (and its audit record) this long after it is
	// injected, with its original createdDateTime: sign-in records reach the log
	// minutes late (p95 2 min, p99 5 min, Microsoft's retired "Microsoft Entra
	// reporting latencies" page). See late.go.
	Late time.Duration `json:"late,omitempty"`
}

func moreRoutes() []route {
	rs := mailRoutes()
	rs = append(rs, caRoutes()...)
	rs = append(rs,
		route{http.MethodGet, "auditLogs/signIns", permSignIns, thrReports, (*Tenant).listSignIns},
		route{http.MethodGet, "auditLogs/signIns/{}", permSignIns, thrReports, (*Tenant).getSignIn},
		route{http.MethodGet, "directory/deletedItems/{}", permDeletedRead, thrEntra, (*Tenant).getDeletedItem}, // userdelete.go
	)
	return rs
}

func (s *SignIn) defaults(t *Tenant) {
	if u := t.st.userLocked(firstNonEmpty(s.UserID, s.UserPrincipalName)); u != nil {
		s.UserID, s.UserPrincipalName = u.ID, u.UserPrincipalName
		if s.UserDisplayName == "" {
			s.UserDisplayName = u.DisplayName
		}
	}
	if s.ID == "" {
		s.ID = newGUID()
	}
	if s.AppID == "" {
		s.AppID, s.AppDisplayName = "00000002-0000-0ff1-ce00-000000000000", firstNonEmpty(s.AppDisplayName, "Office 365 Exchange Online")
	}
	if s.AppDisplayName == "" {
		s.AppDisplayName = "Unknown application"
	}
	if s.ClientAppUsed == "" {
		s.ClientAppUsed = "Browser"
	}
	if s.RiskLevelDuringSignIn == "" {
		s.RiskLevelDuringSignIn = "none"
	}
	if s.RiskLevelAggregated == "" {
		s.RiskLevelAggregated = "none"
	}
	if s.RiskState == "" {
		s.RiskState = "none"
		if s.RiskLevelDuringSignIn != "none" && s.RiskLevelDuringSignIn != "hidden" {
			s.RiskState = "atRisk"
		}
	}
	if s.RiskDetail == "" {
		s.RiskDetail = "none"
	}
	if s.ConditionalAccessStatus == "" {
		s.ConditionalAccessStatus = "notApplied"
	}
	if s.Browser == "" {
		s.Browser = "Edge 124.0.0"
	}
	if s.OperatingSystem == "" {
		s.OperatingSystem = "Windows10"
	}
	if s.UserAgent == "" {
		s.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0"
	}
	if s.CreatedDateTime.IsZero() {
		s.CreatedDateTime = t.now()
	}
	if s.FailureReason == "" {
		s.FailureReason = signInFailure(s.ErrorCode)
	}
}

func signInFailure(code int) string {
	switch code {
	case 0:
		return "Other."
	case 50126:
		return "Error validating credentials due to invalid username or password."
	case 50074:
		return "Strong Authentication is required."
	case 50053:
		return "Account is locked because user tried to sign in too many times with an incorrect user ID or password."
	case 53003:
		return "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
	case 50057:
		return "User account is disabled. The account has been disabled by an administrator."
	}
	return "Other."
}

func (s SignIn) obj() map[string]any {
	ret := s.RiskEventTypes
	if ret == nil {
		ret = []string{}
	}
	return map[string]any{
		"id": s.ID, "createdDateTime": graphTime(s.CreatedDateTime), "userDisplayName": s.UserDisplayName,
		"userPrincipalName": s.UserPrincipalName, "userId": s.UserID, "appId": s.AppID, "appDisplayName": s.AppDisplayName,
		"ipAddress": s.IPAddress, "clientAppUsed": s.ClientAppUsed, "correlationId": newGUID(),
		"conditionalAccessStatus": s.ConditionalAccessStatus, "isInteractive": !s.NonInteractive,
		"riskDetail": s.RiskDetail, "riskLevelAggregated": s.RiskLevelAggregated, "riskLevelDuringSignIn": s.RiskLevelDuringSignIn,
		"riskState": s.RiskState, "riskEventTypes": ret, "riskEventTypes_v2": ret,
		"resourceDisplayName": "Office 365 Exchange Online", "resourceId": "00000002-0000-0ff1-ce00-000000000000",
		"status":       map[string]any{"errorCode": s.ErrorCode, "failureReason": s.FailureReason, "additionalDetails": nil},
		"deviceDetail": map[string]any{"deviceId": "", "displayName": "", "operatingSystem": s.OperatingSystem, "browser": s.Browser, "isCompliant": false, "isManaged": false, "trustType": ""},
		"location": map[string]any{"city": s.City, "state": s.State, "countryOrRegion": s.CountryOrRegion,
			"geoCoordinates": map[string]any{"altitude": nil, "latitude": nil, "longitude": nil}},
		"appliedConditionalAccessPolicies": []any{},
	}
}

// InjectSignIn records a sign-in: a Graph signIn and an Audit.AzureActiveDirectory
// UserLoggedIn/UserLoginFailed record, both visible after AvailabilityDelay.
func (t *Tenant) InjectSignIn(s SignIn) SignIn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.injectSignInLocked(s, t.now().Add(max(t.opts.AvailabilityDelay, s.Late)))
}

func (t *Tenant) injectSignInLocked(s SignIn, visible time.Time) SignIn {
	s.defaults(t)
	t.st.signIns = append(t.st.signIns, &item{obj: s.obj(), visible: visible, seq: t.st.nextSeq()})
	op, status := "UserLoggedIn", "Success"
	if s.ErrorCode != 0 {
		op, status = "UserLoginFailed", "Failed"
	}
	rec := t.baseRecord(s.CreationOrNow(), 15, op, s.UserPrincipalName, "AzureActiveDirectory", status)
	rec["ClientIP"] = s.IPAddress
	rec["ObjectId"] = "00000002-0000-0ff1-ce00-000000000000"
	rec["UserKey"] = s.UserID
	rec["UserType"] = 0
	rec["AzureActiveDirectoryEventType"] = 1
	rec["ExtendedProperties"] = []any{
		map[string]any{"Name": "ResultStatusDetail", "Value": status},
		map[string]any{"Name": "UserAgent", "Value": s.UserAgent},
		map[string]any{"Name": "RequestType", "Value": "OAuth2:Authorize"},
	}
	rec["ModifiedProperties"] = []any{}
	rec["Actor"] = []any{map[string]any{"ID": s.UserID, "Type": 0}, map[string]any{"ID": s.UserPrincipalName, "Type": 5}}
	rec["ActorContextId"] = t.opts.TenantID
	rec["ActorIpAddress"] = s.IPAddress
	rec["InterSystemsId"] = newGUID()
	rec["IntraSystemId"] = newGUID()
	rec["SupportTicketId"] = ""
	rec["Target"] = []any{map[string]any{"ID": "00000002-0000-0ff1-ce00-000000000000", "Type": 0}}
	rec["TargetContextId"] = t.opts.TenantID
	rec["ApplicationId"] = s.AppID
	rec["DeviceProperties"] = []any{map[string]any{"Name": "OS", "Value": s.OperatingSystem}, map[string]any{"Name": "BrowserType", "Value": s.Browser}}
	rec["ErrorNumber"] = fmt.Sprint(s.ErrorCode)
	if s.ErrorCode != 0 {
		rec["LogonError"] = logonError(s.ErrorCode)
	}
	t.addRecordsLocked("Audit.AzureActiveDirectory", visible, rec)
	return s
}

// CreationOrNow is the sign-in time.
func (s SignIn) CreationOrNow() time.Time { return s.CreatedDateTime }

func logonError(code int) string {
	switch code {
	case 50126:
		return "InvalidUserNameOrPassword"
	case 50074:
		return "UserStrongAuthClientAuthNRequiredInterrupt"
	case 50053:
		return "IdsLocked"
	case 53003:
		return "BlockedByConditionalAccess"
	case 50057:
		return "UserAccountDisabled"
	}
	return "Other"
}

// AddRawSignIn stores a Graph signIn as given (visible at once).
func (t *Tenant) AddRawSignIn(raw json.RawMessage) error {
	m := decodeObj(raw)
	if m == nil {
		return fmt.Errorf("m365sim: sign-in is not a JSON object")
	}
	t.mu.Lock()
	t.st.signIns = append(t.st.signIns, &item{obj: m, seq: t.st.nextSeq()})
	t.mu.Unlock()
	return nil
}

// SetPremium switches the tenant's Entra ID P1/P2 licence (SetLicence with
// LicenceP2 or LicenceFree); without it the sign-in report and Identity
// Protection answer 403 as Microsoft does.
func (t *Tenant) SetPremium(on bool) {
	if on {
		t.SetLicence(LicenceP2)
	} else {
		t.SetLicence(LicenceFree)
	}
}

func (t *Tenant) signInItemsLocked() []*item {
	now := t.now()
	items := make([]*item, 0, len(t.st.signIns))
	for _, it := range t.st.signIns {
		v := visibleVersion(it, now) // signinupdate.go: the newest version shown
		if v == nil {
			v = it
		}
		items = append(items, &item{obj: cloneObj(v.obj), visible: v.visible, seq: it.seq})
	}
	// Graph orders sign-ins by createdDateTime, newest first.
	sort.SliceStable(items, func(i, j int) bool {
		a, _ := parseODataTime(str(items[i].obj, "createdDateTime"))
		b, _ := parseODataTime(str(items[j].obj, "createdDateTime"))
		return a.After(b)
	})
	return items
}

func (t *Tenant) premiumCheck(r *req) *resp {
	if t.noPremium {
		return t.graphError(r, http.StatusForbidden, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "Neither tenant is B2C or tenant doesn't have premium license")
	}
	return nil
}

func (t *Tenant) listSignIns(r *req, _ []string) *resp {
	t.mu.Lock()
	if res := t.premiumCheck(r); res != nil {
		t.mu.Unlock()
		return res
	}
	items := t.signInItemsLocked()
	t.mu.Unlock()
	return t.list(r, items, listing{context: "auditLogs/signIns", defTop: 1000, maxTop: 1000, schema: signInSchema()})
}

func (t *Tenant) getSignIn(r *req, p []string) *resp {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if res := t.premiumCheck(r); res != nil {
		return res
	}
	for _, it := range t.st.signIns {
		if v := visibleVersion(it, now); v != nil && strings.EqualFold(str(it.obj, "id"), p[0]) {
			o := cloneObj(v.obj)
			o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns/$entity"
			return jsonResp(http.StatusOK, o)
		}
	}
	return t.graphError(r, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", p[0]))
}
