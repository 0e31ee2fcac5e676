package m365sim

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestQueryStrictness: an unknown property in $filter or $select, or an
// operator the property does not support, is refused with Graph's status,
// code and text (schema.go names the captures), on every resource the
// emulator serves; and nothing is listed.
func TestQueryStrictness(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	g := tn.Info().GraphURL
	for _, c := range []struct {
		path, filter, sel string
		code, msg         string
	}{
		{"/users", "officeLocation eq 'Paris'", "", "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'officeLocation' of resource 'User'."},
		{"/users", "accountEnabled ge true", "", "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'accountEnabled' of resource 'User'."},
		{"/users", "startswith(id,'a11')", "", "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'id' of resource 'User'."},
		{"/users", "shoeSize eq 42", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'shoeSize' on type 'microsoft.graph.user'."},
		{"/users", "", "id,shoeSize", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'shoeSize' on type 'microsoft.graph.user'."},
		{"/users/alice@contoso.com", "", "id,password", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'password' on type 'microsoft.graph.user'."},
		{"/auditLogs/signIns", "createdDateTime gt 2024-01-01T00:00:00Z", "", "BadRequest", "Invalid filter clause"},
		{"/auditLogs/signIns", "contains(userPrincipalName,'alice')", "", "BadRequest", "Invalid filter clause"},
		{"/auditLogs/signIns", "isRisky eq true", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'isRisky' on type 'microsoft.graph.signIn'."},
		{"/auditLogs/signIns", "status/reason eq 'x'", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'reason' on type 'microsoft.graph.signInStatus'."},
		{"/identityProtection/riskDetections", "createdDateTime ge 2024-01-01T00:00:00Z", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'createdDateTime' on type 'microsoft.graph.riskDetection'."},
		{"/identityProtection/riskDetections", "startswith(riskEventType,'anon')", "", "BadRequest", "Invalid filter clause"},
		{"/identityProtection/riskyUsers", "", "id,score", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'score' on type 'microsoft.graph.riskyUser'."},
		{"/identity/conditionalAccess/namedLocations", "cidr eq '1.2.3.4/32'", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'cidr' on type 'microsoft.graph.namedLocation'."},
		{"/identity/conditionalAccess/policies", "conditions eq null", "", "BadRequest", "Invalid filter clause"},
		{"/users/bob@contoso.com/messages", "isJunk ne true", "", "RequestBroker--ParseUri",
			"Could not find a property named 'isJunk' on type 'microsoft.graph.message'."},
		{"/users/bob@contoso.com/messages", "body eq 'x'", "", "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."},
		{"/users/bob@contoso.com/mailFolders/inbox/messageRules", "", "id,forwardTo", "RequestBroker--ParseUri",
			"Could not find a property named 'forwardTo' on type 'microsoft.graph.messageRule'."},
		{"/directoryRoles", "description eq 'x'", "", "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'description' of resource 'DirectoryRole'."},
		{"/roleManagement/directory/roleAssignments", "principalId ne '" + AliceID + "'", "", "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'principalId' of resource 'RoleAssignment'."},
		{"/identityProtection/riskyUsers/" + AliceID, "", "id,score", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'score' on type 'microsoft.graph.riskyUser'."},
		{"/identityProtection/riskDetections/x", "", "severity", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'severity' on type 'microsoft.graph.riskDetection'."},
		{"/identity/conditionalAccess/namedLocations/x", "", "cidr", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'cidr' on type 'microsoft.graph.namedLocation'."},
		{"/identity/conditionalAccess/policies/x", "", "owner", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'owner' on type 'microsoft.graph.conditionalAccessPolicy'."},
		{"/directoryRoles/62e90394-69f5-4237-9190-012177145e10", "", "members2", "BadRequest",
			"Parsing OData Select and Expand failed: Could not find a property named 'members2' on type 'microsoft.graph.directoryRole'."},
		{"/roleManagement/directory/roleEligibilityScheduleInstances", "userId eq 'x'", "", "BadRequest",
			"Invalid filter clause: Could not find a property named 'userId' on type 'microsoft.graph.unifiedRoleEligibilityScheduleInstance'."},
	} {
		q := url.Values{}
		if c.filter != "" {
			q.Set("$filter", c.filter)
		}
		if c.sel != "" {
			q.Set("$select", c.sel)
		}
		res, body := do(t, tn, "GET", g+c.path+"?"+q.Encode(), tok, "")
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
			Value []any                          `json:"value"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if res.StatusCode != 400 || e.Error.Code != c.code || e.Error.Message != c.msg || e.Value != nil {
			t.Errorf("%s $filter=%q $select=%q: %d %s\nwant 400 %s %q", c.path, c.filter, c.sel, res.StatusCode, body, c.code, c.msg)
		}
	}
}

// TestEngineQueriesAccepted: the queries Responder's clients send (feeds,
// graphexec, doctor), and the documented forms around them, are accepted and
// filter as Graph does.
func TestEngineQueriesAccepted(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	g := tn.Info().GraphURL
	tn.InjectRiskDetection(RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "medium", RiskEventType: "anonymizedIPAddress"})
	for _, c := range []struct{ path, filter, sel string }{
		{"/auditLogs/signIns", "createdDateTime ge 2024-01-01T00:00:00Z and createdDateTime le 2099-01-01T00:00:00Z", ""},
		{"/auditLogs/signIns", "status/errorCode ne 0 and startswith(ipAddress,'203.')", ""},
		{"/identityProtection/riskDetections", "lastUpdatedDateTime ge 2024-01-01T00:00:00Z and lastUpdatedDateTime le 2099-01-01T00:00:00Z", ""},
		{"/identityProtection/riskyUsers", "riskLastUpdatedDateTime ge 2024-01-01T00:00:00Z and riskLastUpdatedDateTime le 2099-01-01T00:00:00Z", ""},
		{"/identityProtection/riskyUsers", "riskLevel eq microsoft.graph.riskLevel'medium'", ""},
		{"/users", "", "id,userPrincipalName,mail"},
		{"/users", "id in ('" + AliceID + "','" + BobID + "')", "id"},
		{"/users", "startswith(displayName,'Ali')", "id,displayName"},
		{"/users/alice@contoso.com", "", "id,userPrincipalName,accountEnabled"},
		{"/users/alice@contoso.com", "", "id,signInSessionsValidFrom"},
		{"/users/alice@contoso.com/memberOf", "", "displayName"},
		{"/users/bob@contoso.com/messages", "internetMessageId eq '<a@b>' and receivedDateTime ge 2024-01-01T00:00:00Z and receivedDateTime lt 2099-01-01T00:00:00Z and from/emailAddress/address eq 'x@y.com' and subject eq 's'",
			"id,internetMessageId,subject,from,receivedDateTime"},
		{"/users/bob@contoso.com/mailFolders/deleteditems/messages", "subject eq 's'", "id"},
		{"/roleManagement/directory/roleAssignments", "roleDefinitionId eq '62e90394-69f5-4237-9190-012177145e10'", ""},
		{"/roleManagement/directory/roleAssignments", "principalId eq '" + AliceID + "'", ""},
		{"/roleManagement/directory/roleEligibilityScheduleInstances", "roleDefinitionId eq '62e90394-69f5-4237-9190-012177145e10'", ""},
		{"/identity/conditionalAccess/namedLocations", "startswith(displayName,'Responder')", "id,displayName,microsoft.graph.ipNamedLocation/ipRanges"},
		{"/identity/conditionalAccess/policies", "displayName eq 'x'", "id,state"},
	} {
		q := url.Values{}
		if c.filter != "" {
			q.Set("$filter", c.filter)
		}
		if c.sel != "" {
			q.Set("$select", c.sel)
		}
		if res, body := do(t, tn, "GET", g+c.path+"?"+q.Encode(), tok, ""); res.StatusCode != 200 {
			t.Errorf("%s $filter=%q $select=%q: %d %s", c.path, c.filter, c.sel, res.StatusCode, body)
		}
	}
	// in and the enum literal filter, not only parse.
	q := url.Values{"$filter": {"id in ('" + BobID + "')"}, "$select": {"id"}}
	if _, body := do(t, tn, "GET", g+"/users?"+q.Encode(), tok, ""); !strings.Contains(body, BobID) || strings.Contains(body, AliceID) {
		t.Errorf("in: %s", body)
	}
	q = url.Values{"$filter": {"riskLevel eq microsoft.graph.riskLevel'medium'"}}
	if _, body := do(t, tn, "GET", g+"/identityProtection/riskyUsers?"+q.Encode(), tok, ""); !strings.Contains(body, "alice@") {
		t.Errorf("enum literal: the medium-risk user not listed: %s", body)
	}
	q = url.Values{"$filter": {"riskLevel eq microsoft.graph.riskLevel'high'"}}
	if _, body := do(t, tn, "GET", g+"/identityProtection/riskyUsers?"+q.Encode(), tok, ""); strings.Contains(body, "alice@") {
		t.Errorf("enum literal: a medium-risk user listed as high: %s", body)
	}
}
