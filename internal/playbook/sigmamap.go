package playbook

import (
	"sort"
	"strings"

	"github.com/responder-sec/responder/internal/event"
)

// Field mapping: SigmaHQ's M365 and Azure rules are written for other
// pipelines' column names (Azure Monitor / Sentinel for product azure, an
// eventSource/eventName shape for m365 threat_management). Each logsource
// Responder accepts has an explicit table from those names onto the records
// its feeds carry; a rule that names a field outside the table is refused
// with the field named. The tables are documented in doc.go.

// sigmaField is where a rule's field is read from.
type sigmaField struct {
	name  string
	refs  []ref // values are gathered from every path, in order
	xform int
	// virtual computes the values instead of refs (Set.Decode fills its
	// slot like any other field's, decoding what it reads).
	virtual func(c *evalCtx, out []any) ([]any, bool)
}

const (
	xfNone      = iota
	xfTrimDot   // "Add member to role." -> "Add member to role"
	xfResultStr // Succeeded, Success, True -> success; Failed, False -> failure
)

func normResultStatus(s string) string {
	switch strings.ToLower(s) {
	case "succeeded", "success", "true":
		return "success"
	case "failed", "failure", "false":
		return "failure"
	}
	return s
}

// sigmaMapping is the table for one logsource.
type sigmaMapping struct {
	name   string
	source event.Source
	fields map[string]*sigmaField // lower-cased rule field name
	// prefixes map "<Prefix>.<Name>" onto a generated field.
	prefixes map[string]func(name string) *sigmaField
	// identity accepts a field that passes the check as a raw path of the same name.
	identity func(name string) bool
	// guard holds for every record of the logsource (say Workload AzureActiveDirectory).
	guard func() sigmaNode
}

func (m *sigmaMapping) field(name string) (*sigmaField, bool) {
	if f, ok := m.fields[strings.ToLower(name)]; ok {
		return f, true
	}
	if pre, _, ok := strings.Cut(name, "."); ok {
		if gen, ok := m.prefixes[strings.ToLower(pre)]; ok {
			return gen(name), true
		}
	}
	if m.identity != nil && m.identity(name) {
		r, err := parseRef("raw."+name, false)
		if err == nil {
			return &sigmaField{name: name, refs: []ref{r}}, true
		}
	}
	return nil, false
}

func rawField(name string, xform int, paths ...string) *sigmaField {
	f := &sigmaField{name: name, xform: xform}
	for _, p := range paths {
		r, err := parseRef(p, false)
		if err != nil {
			panic("playbook: bad built-in sigma mapping " + p) // compile-time table, covered by tests
		}
		f.refs = append(f.refs, r)
	}
	return f
}

// signInStatus is Azure Monitor's Status for a Graph signIn: "Success" or
// "Failure" from status.errorCode, then status.failureReason and
// status.additionalDetails (Sentinel's Status column carries all three).
func signInStatus(c *evalCtx, out []any) ([]any, bool) {
	st, ok := c.member("status")
	m, isMap := st.(map[string]any)
	if !ok || !isMap {
		return out, false
	}
	code, hasCode := number(m["errorCode"])
	switch {
	case hasCode && code == 0:
		out = append(out, "Success")
	case hasCode:
		out = append(out, "Failure")
	}
	for _, k := range [...]string{"failureReason", "additionalDetails"} {
		if s, ok := m[k].(string); ok && s != "" {
			out = append(out, m[k]) // the value as read: no new interface
		}
	}
	return out, true
}

var pascalRE = func(name string) bool {
	if name == "" || name[0] < 'A' || name[0] > 'Z' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return !strings.Contains(name, "..") && !strings.HasSuffix(name, ".")
}

// riskDetectionFields are the Graph riskDetection properties.
var riskDetectionFields = []string{
	"id", "requestId", "correlationId", "riskEventType", "riskType", "riskState", "riskLevel",
	"riskDetail", "source", "detectionTimingType", "activity", "tokenIssuerType", "ipAddress",
	"location", "activityDateTime", "detectedDateTime", "lastUpdatedDateTime", "userId",
	"userDisplayName", "userPrincipalName", "additionalInfo",
}

func newSigmaMappings() map[string]*sigmaMapping {
	ms := map[string]*sigmaMapping{}

	// m365 audit: Management Activity API records, field names as Microsoft
	// writes them (Operation, Parameters, OperationProperties, Workload…).
	ms["m365/audit"] = &sigmaMapping{
		name: "m365/audit", source: event.SourceAudit,
		fields:   map[string]*sigmaField{},
		identity: pascalRE,
	}

	// m365 threat_management / threat_detection: alerts in the Management
	// Activity API (SecurityComplianceCenter AlertTriggered/AlertEntityGenerated,
	// Defender for Cloud Apps alerts).
	threat := func(service string) *sigmaMapping {
		return &sigmaMapping{
			name: "m365/" + service, source: event.SourceAudit,
			fields: map[string]*sigmaField{
				"eventsource": rawField("eventSource", xfNone, "raw.Workload"),
				"eventname":   rawField("eventName", xfNone, "raw.Name", "raw.AlertDisplayName"),
				"status":      rawField("status", xfResultStr, "raw.ResultStatus"),
			},
		}
	}
	ms["m365/threat_management"] = threat("threat_management")
	ms["m365/threat_detection"] = threat("threat_detection")

	// azure auditlogs: Entra ID audit events as the Management Activity API
	// carries them (Workload AzureActiveDirectory), from Azure Monitor names.
	modProp := func(name string) *sigmaField {
		return rawField(name, xfNone, "raw.ModifiedProperties[Name="+name+"].NewValue")
	}
	ms["azure/auditlogs"] = &sigmaMapping{
		name: "azure/auditlogs", source: event.SourceAudit,
		fields: map[string]*sigmaField{
			"operationname":              rawField("operationName", xfTrimDot, "raw.Operation"),
			"properties.message":         rawField("properties.message", xfTrimDot, "raw.Operation"),
			"activitydisplayname":        rawField("ActivityDisplayName", xfTrimDot, "raw.Operation"),
			"properties.targetresources": rawField("properties.targetResources", xfNone, "raw.Target", "raw.ModifiedProperties"),
			"targetresources":            rawField("TargetResources", xfNone, "raw.Target", "raw.ModifiedProperties"),
			"result":                     rawField("Result", xfResultStr, "raw.ResultStatus"),
			"initiatedby":                rawField("InitiatedBy", xfNone, "raw.UserId", "raw.Actor"),
		},
		prefixes: map[string]func(string) *sigmaField{
			"consentcontext": modProp, "consentaction": modProp, "role": modProp, "targetid": modProp,
		},
		guard: func() sigmaNode {
			return &sigmaFieldMatch{
				src:    "Workload",
				field:  rawField("Workload", xfNone, "raw.Workload"),
				values: []sigmaValue{{kind: svEq, s: "azureactivedirectory"}},
			}
		},
	}

	// azure signinlogs: Graph signIn (bare, or inside a diagnostic-settings
	// envelope), from Azure Monitor / Sentinel SigninLogs column names.
	signin := map[string]*sigmaField{
		"resulttype":                rawField("ResultType", xfNone, "raw.status.errorCode"),
		"resultdescription":         rawField("ResultDescription", xfNone, "raw.status.failureReason", "raw.status.additionalDetails"),
		"status":                    {name: "Status", virtual: signInStatus},
		"authenticationrequirement": rawField("AuthenticationRequirement", xfNone, "raw.authenticationRequirement"),
		"riskstate":                 rawField("RiskState", xfNone, "raw.riskState"),
		"risklevelduringsignin":     rawField("RiskLevelDuringSignIn", xfNone, "raw.riskLevelDuringSignIn"),
		"risklevelaggregated":       rawField("RiskLevelAggregated", xfNone, "raw.riskLevelAggregated"),
		"riskdetail":                rawField("RiskDetail", xfNone, "raw.riskDetail"),
		"riskeventtypes":            rawField("RiskEventTypes", xfNone, "raw.riskEventTypes"),
		"riskeventtypes_v2":         rawField("RiskEventTypes_V2", xfNone, "raw.riskEventTypes_v2"),
		"useragent":                 rawField("UserAgent", xfNone, "raw.userAgent"),
		"userprincipalname":         rawField("UserPrincipalName", xfNone, "raw.userPrincipalName"),
		"userid":                    rawField("UserId", xfNone, "raw.userId"),
		"appdisplayname":            rawField("AppDisplayName", xfNone, "raw.appDisplayName"),
		"appid":                     rawField("AppId", xfNone, "raw.appId"),
		"ipaddress":                 rawField("IPAddress", xfNone, "raw.ipAddress"),
		"clientappused":             rawField("ClientAppUsed", xfNone, "raw.clientAppUsed"),
		"conditionalaccessstatus":   rawField("ConditionalAccessStatus", xfNone, "raw.conditionalAccessStatus"),
		"location":                  rawField("Location", xfNone, "raw.location.countryOrRegion"),
		"resourcedisplayname":       rawField("ResourceDisplayName", xfNone, "raw.resourceDisplayName"),
		"isinteractive":             rawField("IsInteractive", xfNone, "raw.isInteractive"),
		"authenticationdetails":     rawField("AuthenticationDetails", xfNone, "raw.authenticationDetails"),
		"hometenantid":              rawField("HomeTenantId", xfNone, "raw.homeTenantId"),
		"resourcetenantid":          rawField("ResourceTenantId", xfNone, "raw.resourceTenantId"),
	}
	sub := func(graphRoot string) func(string) *sigmaField {
		return func(name string) *sigmaField {
			_, rest, _ := strings.Cut(name, ".")
			return rawField(name, xfNone, "raw."+graphRoot+"."+rest)
		}
	}
	ms["azure/signinlogs"] = &sigmaMapping{
		name: "azure/signinlogs", source: event.SourceSignIn, fields: signin,
		prefixes: map[string]func(string) *sigmaField{
			"devicedetail": sub("deviceDetail"), "locationdetails": sub("location"), "status": sub("status"),
		},
	}

	// azure riskdetection: Graph riskDetection, whose property names the rules use.
	rd := map[string]*sigmaField{}
	for _, f := range riskDetectionFields {
		rd[strings.ToLower(f)] = rawField(f, xfNone, "raw."+f)
	}
	ms["azure/riskdetection"] = &sigmaMapping{
		name: "azure/riskdetection", source: event.SourceRiskDetection, fields: rd,
		prefixes: map[string]func(string) *sigmaField{"location": sub("location")},
	}
	return ms
}

// sigmaMappings is built once; it is read-only.
var sigmaMappings = newSigmaMappings()

func lookupSigmaMapping(product, service, category string) *sigmaMapping {
	if category != "" {
		return nil
	}
	return sigmaMappings[strings.ToLower(product)+"/"+strings.ToLower(service)]
}

func sigmaMappingNames() []string {
	out := make([]string, 0, len(sigmaMappings))
	for k := range sigmaMappings {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
