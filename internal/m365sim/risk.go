package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

var (
	permRiskEvents  = anyOf("IdentityRiskEvent.Read.All", "IdentityRiskEvent.ReadWrite.All")
	permRiskyRead   = anyOf("IdentityRiskyUser.Read.All", "IdentityRiskyUser.ReadWrite.All")
	permRiskyWrite  = anyOf("IdentityRiskyUser.ReadWrite.All")
	riskLevelRank   = map[string]int{"none": 0, "low": 1, "medium": 2, "high": 3, "hidden": 0}
	validRiskLevels = map[string]bool{"low": true, "medium": true, "high": true, "hidden": true, "none": true}
)

// RiskDetection is an Identity Protection risk detection.
type RiskDetection struct {
	ID                  string    `json:"id"`
	RequestID           string    `json:"requestId,omitempty"`
	CorrelationID       string    `json:"correlationId,omitempty"`
	UserID              string    `json:"userId,omitempty"`
	UserPrincipalName   string    `json:"userPrincipalName,omitempty"`
	UserDisplayName     string    `json:"userDisplayName,omitempty"`
	RiskEventType       string    `json:"riskEventType,omitempty"` // default unfamiliarFeatures
	RiskLevel           string    `json:"riskLevel,omitempty"`     // default high
	RiskState           string    `json:"riskState,omitempty"`     // default atRisk
	RiskDetail          string    `json:"riskDetail,omitempty"`    // default none
	Source              string    `json:"source,omitempty"`        // default IdentityProtection
	DetectionTimingType string    `json:"detectionTimingType,omitempty"`
	Activity            string    `json:"activity,omitempty"`
	IPAddress           string    `json:"ipAddress,omitempty"`
	City                string    `json:"city,omitempty"`
	State               string    `json:"state,omitempty"`
	CountryOrRegion     string    `json:"countryOrRegion,omitempty"`
	AdditionalInfo      string    `json:"additionalInfo,omitempty"`
	ActivityDateTime    time.Time `json:"activityDateTime"`
	DetectedDateTime    time.Time `json:"detectedDateTime"`
	LastUpdatedDateTime time.Time `json:"lastUpdatedDateTime"`
	// Late publishes the detection this long after it is injected, with its
	// original timestamps (lastUpdatedDateTime defaults to detectedDateTime, as
	// in Microsoft's sample), as Identity Protection does: "Real-time detections
	// may not show up in reporting for 5 to 10 minutes. Offline detections may
	// not show up in reporting for 48 hours"
	// (https://learn.microsoft.com/entra/id-protection/concept-identity-protection-risks).
	// The user's riskyUsers state changes when the detection shows. See late.go.
	Late time.Duration `json:"late,omitempty"`
}

func riskRoutes() []route {
	return []route{
		// Licences as Microsoft documents them: licence.go.
		{http.MethodGet, "identityProtection/riskDetections", permRiskEvents, thrIdPCA, needsLicence(LicenceP1, (*Tenant).listRiskDetections)},
		{http.MethodGet, "identityProtection/riskDetections/{}", permRiskEvents, thrIdPCA, needsLicence(LicenceP1, (*Tenant).getRiskDetection)},
		{http.MethodGet, "identityProtection/riskyUsers", permRiskyRead, thrIdPCA, needsLicence(LicenceP2, (*Tenant).listRiskyUsers)},
		{http.MethodGet, "identityProtection/riskyUsers/{}", permRiskyRead, thrIdPCA, needsLicence(LicenceP2, (*Tenant).getRiskyUser)},
		{http.MethodPost, "identityProtection/riskyUsers/confirmCompromised", permRiskyWrite, thrIdPCA, needsLicence(LicenceP2, (*Tenant).confirmCompromised)},
		{http.MethodPost, "identityProtection/riskyUsers/dismiss", permRiskyWrite, thrIdPCA, needsLicence(LicenceP2, (*Tenant).dismissRisk)},
	}
}

func (d RiskDetection) obj() map[string]any {
	loc := map[string]any{"city": d.City, "state": d.State, "countryOrRegion": d.CountryOrRegion, "geoCoordinates": nil}
	return map[string]any{
		"id": d.ID, "requestId": d.RequestID, "correlationId": d.CorrelationID, "riskEventType": d.RiskEventType,
		"riskState": d.RiskState, "riskLevel": d.RiskLevel, "riskDetail": d.RiskDetail, "source": d.Source,
		"detectionTimingType": d.DetectionTimingType, "activity": d.Activity, "tokenIssuerType": "AzureAD",
		"ipAddress": d.IPAddress, "location": loc, "activityDateTime": graphTime(d.ActivityDateTime),
		"detectedDateTime": graphTime(d.DetectedDateTime), "lastUpdatedDateTime": graphTime(d.LastUpdatedDateTime),
		"userId": d.UserID, "userDisplayName": d.UserDisplayName, "userPrincipalName": d.UserPrincipalName,
		"additionalInfo": d.AdditionalInfo,
	}
}

// InjectRiskDetection records a detection, visible after AvailabilityDelay, and
// raises the user's risk in riskyUsers. Zero fields get defaults.
func (t *Tenant) InjectRiskDetection(d RiskDetection) RiskDetection {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.injectRiskLocked(d, t.now().Add(max(t.opts.AvailabilityDelay, d.Late)))
}

func (t *Tenant) injectRiskLocked(d RiskDetection, visible time.Time) RiskDetection {
	now := t.now()
	if d.UserID == "" && d.UserPrincipalName != "" {
		if u := t.st.userLocked(d.UserPrincipalName); u != nil {
			d.UserID = u.ID
		}
	}
	if u := t.st.userLocked(d.UserID); u != nil {
		if d.UserPrincipalName == "" {
			d.UserPrincipalName = u.UserPrincipalName
		}
		if d.UserDisplayName == "" {
			d.UserDisplayName = u.DisplayName
		}
	}
	if d.ID == "" {
		d.ID = strings.ReplaceAll(newGUID()+newGUID(), "-", "")
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&d.RequestID, newGUID())
	def(&d.CorrelationID, newGUID())
	def(&d.RiskEventType, "unfamiliarFeatures")
	def(&d.RiskLevel, "high")
	def(&d.RiskState, "atRisk")
	def(&d.RiskDetail, "none")
	def(&d.Source, "IdentityProtection")
	def(&d.DetectionTimingType, "realtime")
	def(&d.Activity, "signin")
	def(&d.AdditionalInfo, `[{"Key":"userAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"}]`)
	if d.ActivityDateTime.IsZero() {
		d.ActivityDateTime = now
	}
	if d.DetectedDateTime.IsZero() {
		d.DetectedDateTime = d.ActivityDateTime
	}
	if d.LastUpdatedDateTime.IsZero() {
		d.LastUpdatedDateTime = visible
		if d.Late > 0 {
			d.LastUpdatedDateTime = d.DetectedDateTime
		}
	}
	t.st.riskDetections = append(t.st.riskDetections, &item{obj: d.obj(), visible: visible, seq: t.st.nextSeq()})
	if d.UserID != "" && d.RiskState == "atRisk" {
		ru := t.riskyLocked(d.UserID, d.UserPrincipalName, d.UserDisplayName)
		if visible.After(now) && !ru.isNew {
			// Keep showing the current state until the new one is available.
			ru.prev = &item{obj: cloneObj(ru.obj), visible: ru.visible, prev: ru.prev}
		}
		ru.isNew = false
		cur := str(ru.obj, "riskLevel")
		if str(ru.obj, "riskState") != "atRisk" && str(ru.obj, "riskState") != "confirmedCompromised" {
			cur = "none"
		}
		if riskLevelRank[d.RiskLevel] >= riskLevelRank[cur] {
			ru.obj["riskLevel"] = d.RiskLevel
		}
		if str(ru.obj, "riskState") != "confirmedCompromised" {
			ru.obj["riskState"] = "atRisk"
			ru.obj["riskDetail"] = "none"
		}
		ru.obj["riskLastUpdatedDateTime"] = graphTime(d.LastUpdatedDateTime)
		ru.visible = visible
	}
	return d
}

func (t *Tenant) riskyLocked(userID, upn, name string) *item {
	ru := t.st.riskyUsers[userID]
	if ru == nil {
		ru = &item{obj: map[string]any{"id": userID, "isDeleted": false, "isProcessing": false, "riskLevel": "none",
			"riskState": "none", "riskDetail": "none", "riskLastUpdatedDateTime": graphTime(t.now()),
			"userDisplayName": name, "userPrincipalName": upn}, isNew: true}
		t.st.riskyUsers[userID] = ru
		t.st.riskyOrder = append(t.st.riskyOrder, userID)
	}
	return ru
}

// AddRawRiskDetection stores a Graph riskDetection object as given (e.g. a
// published payload), visible immediately.
func (t *Tenant) AddRawRiskDetection(obj json.RawMessage) error {
	m := decodeObj(obj)
	if m == nil {
		return fmt.Errorf("m365sim: risk detection is not a JSON object")
	}
	t.mu.Lock()
	t.st.riskDetections = append(t.st.riskDetections, &item{obj: m, seq: t.st.nextSeq()})
	t.mu.Unlock()
	return nil
}

// AddRawRiskyUser stores a Graph riskyUser object as given.
func (t *Tenant) AddRawRiskyUser(obj json.RawMessage) error {
	m := decodeObj(obj)
	if m == nil || str(m, "id") == "" {
		return fmt.Errorf("m365sim: risky user must be a JSON object with an id")
	}
	t.mu.Lock()
	id := strings.ToLower(str(m, "id"))
	if _, ok := t.st.riskyUsers[id]; !ok {
		t.st.riskyOrder = append(t.st.riskyOrder, id)
	}
	t.st.riskyUsers[id] = &item{obj: m}
	t.mu.Unlock()
	return nil
}

// RiskyUser returns the current riskyUser object for a user (id or UPN).
func (t *Tenant) RiskyUser(idOrUPN string) (map[string]any, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := strings.ToLower(idOrUPN)
	if u := t.st.userLocked(idOrUPN); u != nil {
		id = u.ID
	}
	ru := t.st.riskyUsers[id]
	if ru == nil {
		return nil, false
	}
	return cloneObj(ru.obj), true
}

func idpTopError(t *Tenant) func(r *req, top string) *resp {
	return func(r *req, top string) *resp {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid $top value '%s'. The value must be between 1 and 500.", top))
	}
}

func (t *Tenant) listRiskDetections(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.riskDetections))
	for _, it := range t.st.riskDetections {
		items = append(items, &item{obj: cloneObj(it.obj), visible: it.visible})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: "identityProtection/riskDetections", defTop: 20, maxTop: 500, topError: idpTopError(t), schema: riskDetectionSchema()})
}

func (t *Tenant) getRiskDetection(r *req, p []string) *resp {
	if res := t.checkQuery(r, riskDetectionSchema()); res != nil {
		return res
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range t.st.riskDetections {
		if str(it.obj, "id") == p[0] && !it.visible.After(now) {
			o := cloneObj(it.obj)
			o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identityProtection/riskDetections/$entity"
			return jsonResp(http.StatusOK, o)
		}
	}
	return t.graphError(r, http.StatusNotFound, "ResourceNotFound", "The requested resource was not found.")
}

func (t *Tenant) listRiskyUsers(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.riskyOrder))
	now := t.now()
	for _, id := range t.st.riskyOrder {
		if v := visibleVersion(t.st.riskyUsers[id], now); v != nil {
			items = append(items, &item{obj: cloneObj(v.obj)})
		}
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: "identityProtection/riskyUsers", defTop: 20, maxTop: 500, topError: idpTopError(t), schema: riskyUserSchema()})
}

func (t *Tenant) getRiskyUser(r *req, p []string) *resp {
	if res := t.checkQuery(r, riskyUserSchema()); res != nil {
		return res
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var it *item
	if ru := t.st.riskyUsers[strings.ToLower(p[0])]; ru != nil {
		it = visibleVersion(ru, now)
	}
	if it == nil {
		return t.graphError(r, http.StatusNotFound, "ResourceNotFound", "The requested resource was not found.")
	}
	o := cloneObj(it.obj)
	o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identityProtection/riskyUsers/$entity"
	return jsonResp(http.StatusOK, o)
}

func (t *Tenant) riskAction(r *req, apply func(ru *item)) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	raw, ok := getCI(body, "userIds").([]any)
	if !ok || len(raw) == 0 {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", "The request must contain a non-empty 'userIds' collection.")
	}
	if len(raw) > 60 {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", "The number of userIds exceeds the maximum of 60.")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range raw {
		id, _ := v.(string)
		if !isGUID(id) {
			return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid user id '%s'.", id))
		}
	}
	for _, v := range raw {
		id := strings.ToLower(v.(string))
		u := t.st.users[id]
		upn, name := "", ""
		if u != nil {
			upn, name = u.UserPrincipalName, u.DisplayName
		}
		ru := t.riskyLocked(id, upn, name)
		apply(ru)
		ru.obj["riskLastUpdatedDateTime"] = graphTime(t.now())
		ru.visible = time.Time{}
		ru.prev = nil
		ru.isNew = false
	}
	return noContent()
}

func (t *Tenant) confirmCompromised(r *req, _ []string) *resp {
	return t.riskAction(r, func(ru *item) {
		ru.obj["riskState"] = "confirmedCompromised"
		ru.obj["riskLevel"] = "high"
		ru.obj["riskDetail"] = "adminConfirmedUserCompromised"
	})
}

func (t *Tenant) dismissRisk(r *req, _ []string) *resp {
	return t.riskAction(r, func(ru *item) {
		ru.obj["riskState"] = "dismissed"
		ru.obj["riskLevel"] = "none"
		ru.obj["riskDetail"] = "adminDismissedAllRiskForUser"
	})
}
