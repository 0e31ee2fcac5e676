package m365sim

import (
	"fmt"
	"net/http"
	"strings"
)

// Query strictness: Graph checks $filter and $select against the resource's
// type before it runs a query, and so does the emulator, so that a client
// using an undocumented property or operator fails here as it would in a real
// tenant instead of passing against a lenient emulator.
//
// What Microsoft answers (each text from a public capture or Microsoft's docs):
//
//   - A property the type does not have, in $filter: 400 BadRequest
//     "Invalid filter clause: Could not find a property named 'createdDateTime'
//     on type 'microsoft.graph.riskDetection'." (captured from Graph in
//     https://github.com/wazuh/wazuh/issues/28048). Outlook resources answer
//     400 RequestBroker--ParseUri "Could not find a property named 'isJunk' on
//     type 'microsoft.graph.message'." (https://github.com/wslyvh/paperweight/issues/1).
//   - A property the type does not have, in $select: 400 BadRequest
//     "Parsing OData Select and Expand failed: Could not find a property named
//     'isRead' on type 'microsoft.graph.mailFolder'." (captured in
//     https://github.com/mguessan/davmail/issues/488 and
//     https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/4529).
//   - A directory object's property that does not support the operator (or
//     $filter at all): 400 Request_UnsupportedQuery "Unsupported or invalid
//     query filter clause specified for property 'officeLocation' of resource
//     'User'." (https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3260,
//     .../issues/9135). The operators each user property supports are those of
//     https://learn.microsoft.com/graph/api/resources/user#properties; ne, not
//     and endsWith also need ConsistencyLevel: eventual, which listUsers checks
//     (https://learn.microsoft.com/graph/aad-advanced-queries).
//   - The reporting (sign-in), Identity Protection and Conditional Access APIs
//     answer an unsupported clause with 400 BadRequest "Invalid filter clause"
//     (https://github.com/microsoftgraph/microsoft-graph-docs/issues/5676 and
//     .../issues/6778, List signIns). signIn documents eq, le and ge on
//     createdDateTime, eq (and startsWith) on the user, app and address
//     properties: https://learn.microsoft.com/graph/api/resources/signin.
//   - Outlook answers an operator it cannot apply with 400
//     ErrorInvalidUrlQueryFilter "The query filter contains one or more invalid
//     nodes." (https://learn.microsoft.com/graph/query-parameters, filter on
//     message properties).

// fops is the set of $filter operators a property supports.
type fops uint16

const (
	fEq fops = 1 << iota
	fNe
	fGt
	fGe
	fLt
	fLe
	fStarts
	fEnds
	fContains
	fIn
)

const (
	fCmp = fEq | fNe | fGt | fGe | fLt | fLe
	// fSel: selectable, not filterable.
	fSel fops = 0
	// Directory properties: "Supports $filter (eq, ne, not, ge, le, in,
	// startsWith)" and the like on https://learn.microsoft.com/graph/api/resources/user.
	fDirStr  = fEq | fNe | fGe | fLe | fIn | fStarts
	fDirName = fDirStr | fEnds
	fDirEnum = fEq | fNe | fIn
	// Outlook evaluates comparisons and string functions on message scalars.
	fOutlook = fCmp | fStarts | fEnds | fContains
)

func opBit(op string) fops {
	switch op {
	case "eq":
		return fEq
	case "ne":
		return fNe
	case "gt":
		return fGt
	case "ge":
		return fGe
	case "lt":
		return fLt
	case "le":
		return fLe
	case "startswith":
		return fStarts
	case "endswith":
		return fEnds
	case "contains":
		return fContains
	case "in":
		return fIn
	}
	return 0
}

type family int

const (
	famDirectory family = iota // Entra directory objects: Request_UnsupportedQuery
	famOutlook                 // Outlook (mail, rules)
	famOther                   // reports, Identity Protection, Conditional Access
)

// schema is what Graph's metadata says about one resource type.
type schema struct {
	typeName string // OData type, e.g. microsoft.graph.user
	resource string // directory resource named in Request_UnsupportedQuery, e.g. User
	fam      family
	props    map[string]fops   // lower-case property path -> supported $filter operators
	complex  map[string]string // lower-case complex property -> its OData type
}

func newSchema(typeName, resource string, fam family, props map[string]fops, complex map[string]string) *schema {
	s := &schema{typeName: typeName, resource: resource, fam: fam, props: map[string]fops{}, complex: complex}
	for k, v := range props {
		s.props[strings.ToLower(k)] = v
	}
	if s.complex == nil {
		s.complex = map[string]string{}
	}
	return s
}

// userSchema: https://learn.microsoft.com/graph/api/resources/user#properties
// (the properties the emulator serves).
func userSchema() *schema {
	return newSchema("microsoft.graph.user", "User", famDirectory, map[string]fops{
		"id": fEq | fNe | fIn, "userPrincipalName": fDirName, "mail": fDirName, "displayName": fDirStr,
		"givenName": fDirStr, "surname": fDirStr, "jobTitle": fDirStr, "department": fDirStr, "usageLocation": fDirStr,
		"mobilePhone": fEq | fNe | fGe | fLe | fStarts, "preferredLanguage": fEq | fNe | fGe | fLe | fIn,
		"accountEnabled": fDirEnum, "userType": fDirEnum, "createdDateTime": fEq | fNe | fGe | fLe | fIn,
		"businessPhones": fSel, "officeLocation": fSel, "signInSessionsValidFrom": fSel, "lastPasswordChangeDateTime": fSel,
		"deletedDateTime": fSel, "companyName": fSel, "employeeId": fSel, "onPremisesSamAccountName": fSel,
		"proxyAddresses": fSel, "otherMails": fSel, "identities": fSel, "assignedLicenses": fSel, "signInActivity": fSel,
		"passwordProfile": fSel, "onPremisesSyncEnabled": fSel, "ageGroup": fSel, "city": fSel, "country": fSel,
	}, nil)
}

// signInSchema: https://learn.microsoft.com/graph/api/resources/signin
// (properties and the operators each one lists).
func signInSchema() *schema {
	str := fEq | fStarts
	return newSchema("microsoft.graph.signIn", "", famOther, map[string]fops{
		"id": fEq, "createdDateTime": fEq | fGe | fLe, "userDisplayName": str, "userPrincipalName": str, "userId": fEq,
		"appId": fEq, "appDisplayName": str, "ipAddress": str, "clientAppUsed": fEq, "correlationId": fEq,
		"conditionalAccessStatus": fEq, "isInteractive": fEq, "resourceDisplayName": fEq, "resourceId": fEq,
		"riskDetail": fEq, "riskLevelAggregated": fEq, "riskLevelDuringSignIn": fEq, "riskState": fEq,
		"riskEventTypes": fSel, "riskEventTypes_v2": fSel, "appliedConditionalAccessPolicies": fSel,
		"status": fSel, "status/errorCode": fEq | fNe, "status/failureReason": fSel, "status/additionalDetails": fSel,
		"location": fSel, "location/city": str, "location/state": str, "location/countryOrRegion": str, "location/geoCoordinates": fSel,
		"deviceDetail": fSel, "deviceDetail/browser": str, "deviceDetail/operatingSystem": str, "deviceDetail/deviceId": fEq,
		"deviceDetail/displayName": str, "deviceDetail/isCompliant": fEq, "deviceDetail/isManaged": fEq, "deviceDetail/trustType": fEq,
	}, map[string]string{"status": "microsoft.graph.signInStatus", "location": "microsoft.graph.signInLocation", "deviceDetail": "microsoft.graph.deviceDetail"})
}

// riskDetectionSchema: https://learn.microsoft.com/graph/api/resources/riskdetection
// (List riskDetections supports $filter; its examples compare the enum and
// date properties).
func riskDetectionSchema() *schema {
	enum := fEq | fNe | fIn
	return newSchema("microsoft.graph.riskDetection", "", famOther, map[string]fops{
		"id": fEq | fIn, "requestId": fEq, "correlationId": fEq, "riskEventType": enum, "riskState": enum, "riskLevel": enum,
		"riskDetail": enum, "source": fEq, "detectionTimingType": enum, "activity": enum, "tokenIssuerType": fEq,
		"ipAddress": fEq, "activityDateTime": fCmp, "detectedDateTime": fCmp, "lastUpdatedDateTime": fCmp,
		"userId": fEq | fIn, "userDisplayName": fEq | fStarts, "userPrincipalName": fEq | fStarts, "additionalInfo": fSel,
		"location": fSel, "location/city": fEq, "location/state": fEq, "location/countryOrRegion": fEq, "location/geoCoordinates": fSel,
	}, map[string]string{"location": "microsoft.graph.signInLocation"})
}

// riskyUserSchema: https://learn.microsoft.com/graph/api/resources/riskyuser
// (List riskyUsers' examples filter riskLevel and riskLastUpdatedDateTime).
func riskyUserSchema() *schema {
	enum := fEq | fNe | fIn
	return newSchema("microsoft.graph.riskyUser", "", famOther, map[string]fops{
		"id": fEq | fIn, "isDeleted": fEq, "isProcessing": fEq, "riskLastUpdatedDateTime": fCmp, "riskLevel": enum,
		"riskState": enum, "riskDetail": enum, "userDisplayName": fEq | fStarts, "userPrincipalName": fEq | fStarts,
	}, nil)
}

// namedLocationSchema: https://learn.microsoft.com/graph/api/resources/namedlocation
// with the derived ipNamedLocation and countryNamedLocation properties.
func namedLocationSchema() *schema {
	return newSchema("microsoft.graph.namedLocation", "", famOther, map[string]fops{
		"id": fEq, "displayName": fEq | fNe | fStarts | fContains, "createdDateTime": fCmp, "modifiedDateTime": fCmp,
		"ipRanges": fSel, "isTrusted": fEq, "countriesAndRegions": fSel, "countryLookupMethod": fEq, "includeUnknownCountriesAndRegions": fEq,
	}, nil)
}

// caPolicySchema: https://learn.microsoft.com/graph/api/resources/conditionalaccesspolicy
func caPolicySchema() *schema {
	return newSchema("microsoft.graph.conditionalAccessPolicy", "", famOther, map[string]fops{
		"id": fEq, "displayName": fEq | fNe | fStarts | fContains, "state": fEq | fNe, "createdDateTime": fCmp, "modifiedDateTime": fCmp,
		"description": fSel, "templateId": fEq, "conditions": fSel, "grantControls": fSel, "sessionControls": fSel,
	}, nil)
}

// messageSchema: https://learn.microsoft.com/graph/api/resources/message
func messageSchema() *schema {
	return newSchema("microsoft.graph.message", "", famOutlook, map[string]fops{
		"id": fEq | fNe, "createdDateTime": fCmp, "lastModifiedDateTime": fCmp, "changeKey": fEq, "categories": fSel,
		"receivedDateTime": fCmp, "sentDateTime": fCmp, "hasAttachments": fEq | fNe, "internetMessageId": fEq | fNe,
		"subject": fOutlook, "bodyPreview": fOutlook, "importance": fEq | fNe, "parentFolderId": fEq | fNe, "conversationId": fEq | fNe,
		"conversationIndex": fSel, "isDeliveryReceiptRequested": fEq | fNe, "isReadReceiptRequested": fEq | fNe, "isRead": fEq | fNe,
		"isDraft": fEq | fNe, "webLink": fSel, "inferenceClassification": fEq | fNe, "body": fSel, "uniqueBody": fSel,
		"sender": fSel, "sender/emailAddress/address": fOutlook, "sender/emailAddress/name": fOutlook,
		"from": fSel, "from/emailAddress/address": fOutlook, "from/emailAddress/name": fOutlook,
		"toRecipients": fSel, "ccRecipients": fSel, "bccRecipients": fSel, "replyTo": fSel, "flag": fSel, "flag/flagStatus": fEq | fNe,
		"internetMessageHeaders": fSel,
	}, map[string]string{"from": "microsoft.graph.recipient", "sender": "microsoft.graph.recipient", "flag": "microsoft.graph.followupFlag"})
}

// messageRuleSchema: https://learn.microsoft.com/graph/api/resources/messagerule
func messageRuleSchema() *schema {
	return newSchema("microsoft.graph.messageRule", "", famOutlook, map[string]fops{
		"id": fEq | fNe, "displayName": fOutlook, "sequence": fCmp, "isEnabled": fEq | fNe, "hasError": fEq | fNe,
		"isReadOnly": fEq | fNe, "conditions": fSel, "actions": fSel, "exceptions": fSel,
	}, nil)
}

// directoryRoleSchema: https://learn.microsoft.com/graph/api/resources/directoryrole
// (List directoryRoles: $filter on roleTemplateId).
func directoryRoleSchema() *schema {
	return newSchema("microsoft.graph.directoryRole", "DirectoryRole", famDirectory, map[string]fops{
		"id": fEq, "displayName": fEq, "description": fSel, "roleTemplateId": fEq, "deletedDateTime": fSel,
	}, nil)
}

// roleAssignmentSchema: https://learn.microsoft.com/graph/api/resources/unifiedroleassignment
// (List unifiedRoleAssignments: $filter eq on roleDefinitionId, principalId,
// directoryScopeId, appScopeId, id).
func roleAssignmentSchema() *schema {
	return newSchema("microsoft.graph.unifiedRoleAssignment", "RoleAssignment", famDirectory, map[string]fops{
		"id": fEq, "roleDefinitionId": fEq, "principalId": fEq, "directoryScopeId": fEq, "appScopeId": fEq, "condition": fSel,
		"principal": fSel, "roleDefinition": fSel,
	}, nil)
}

// roleEligibilitySchema: https://learn.microsoft.com/graph/api/resources/unifiedroleeligibilityscheduleinstance
func roleEligibilitySchema() *schema {
	return newSchema("microsoft.graph.unifiedRoleEligibilityScheduleInstance", "RoleEligibilityScheduleInstance", famDirectory, map[string]fops{
		"id": fEq, "roleDefinitionId": fEq, "principalId": fEq, "directoryScopeId": fEq, "appScopeId": fEq,
		"startDateTime": fEq | fGe | fLe, "endDateTime": fEq | fGe | fLe, "memberType": fEq, "roleEligibilityScheduleId": fEq,
		"principal": fSel, "roleDefinition": fSel,
	}, nil)
}

// queryError is a refusal of $filter or $select, in Graph's words.
type queryError struct {
	code, msg string
}

// unknownProp is Graph's answer to a property the type does not have.
func (s *schema) unknownProp(path []string, inSelect bool) *queryError {
	typ, name := s.typeName, path[len(path)-1]
	if len(path) > 1 {
		if c, ok := s.complex[strings.ToLower(path[0])]; ok {
			typ = c
		}
	}
	text := fmt.Sprintf("Could not find a property named '%s' on type '%s'.", name, typ)
	switch {
	case s.fam == famOutlook:
		return &queryError{"RequestBroker--ParseUri", text}
	case inSelect:
		return &queryError{"BadRequest", "Parsing OData Select and Expand failed: " + text}
	}
	return &queryError{"BadRequest", "Invalid filter clause: " + text}
}

// unsupported is Graph's answer to an operator a property does not support.
func (s *schema) unsupported(prop string) *queryError {
	switch s.fam {
	case famDirectory:
		return &queryError{"Request_UnsupportedQuery", fmt.Sprintf("Unsupported or invalid query filter clause specified for property '%s' of resource '%s'.", prop, s.resource)}
	case famOutlook:
		return &queryError{"ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."}
	}
	return &queryError{"BadRequest", "Invalid filter clause"}
}

// lookup finds a property path (case-insensitively, as Graph does).
func (s *schema) lookup(path []string) (fops, bool) {
	o, ok := s.props[strings.ToLower(strings.Join(path, "/"))]
	return o, ok
}

// checkFilter walks a parsed $filter and refuses unknown properties and
// operators the property does not support.
func (s *schema) checkFilter(n filterNode) *queryError {
	use := func(p pathNode, op string) *queryError {
		ops, ok := s.lookup(p.path)
		if !ok {
			return s.unknownProp(p.path, false)
		}
		if ops&opBit(op) == 0 {
			return s.unsupported(strings.Join(p.path, "/"))
		}
		return nil
	}
	switch x := n.(type) {
	case logicNode:
		if e := s.checkFilter(x.l); e != nil {
			return e
		}
		return s.checkFilter(x.r)
	case notNode:
		return s.checkFilter(x.x)
	case cmpNode:
		if p, ok := x.l.(pathNode); ok {
			return use(p, x.op)
		}
		if p, ok := x.r.(pathNode); ok {
			return use(p, x.op)
		}
		return nil
	case inNode:
		if p, ok := x.l.(pathNode); ok {
			return use(p, "in")
		}
		return nil
	case funcNode:
		if len(x.args) > 0 {
			if p, ok := x.args[0].(pathNode); ok {
				return use(p, x.name)
			}
		}
		return nil
	case pathNode:
		// A bare boolean property ($filter=accountEnabled) is eq true.
		return use(x, "eq")
	}
	return nil
}

// checkSelect refuses a $select naming a property the type does not have.
// A derived-type cast ("microsoft.graph.ipNamedLocation/ipRanges") names the
// property after the cast.
func (s *schema) checkSelect(sel string) *queryError {
	if sel == "" {
		return nil
	}
	for _, f := range strings.Split(sel, ",") {
		f = strings.TrimSpace(f)
		if f == "*" || f == "" {
			continue
		}
		if i := strings.LastIndex(f, "/"); i >= 0 && strings.HasPrefix(strings.ToLower(f), "microsoft.graph.") {
			f = f[i+1:]
		}
		if _, ok := s.lookup([]string{f}); !ok {
			return s.unknownProp([]string{f}, true)
		}
	}
	return nil
}

// checkQuery applies s to the request's $filter and $select; nil s checks
// nothing. A $filter that does not parse is left to the caller.
func (t *Tenant) checkQuery(r *req, s *schema) *resp {
	if s == nil {
		return nil
	}
	if e := s.checkSelect(r.q("$select")); e != nil {
		return t.graphError(r, http.StatusBadRequest, e.code, e.msg)
	}
	if f := r.q("$filter"); f != "" {
		n, err := parseFilter(f)
		if err != nil {
			return nil
		}
		if e := s.checkFilter(n); e != nil {
			return t.graphError(r, http.StatusBadRequest, e.code, e.msg)
		}
	}
	return nil
}
