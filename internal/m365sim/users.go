package m365sim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

var (
	permUserRead    = anyOf("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
	permUserEnable  = anyOf("User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All")
	permUserPwd     = anyOf("User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All")
	permUserWrite   = anyOf("User.ReadWrite.All", "Directory.ReadWrite.All")
	permUserRevoke  = anyOf("User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All")
	permDomainRead  = anyOf("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
	permRoleRead    = anyOf("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "Directory.Read.All", "Directory.ReadWrite.All")
	privilegedRoles = []string{"Global Administrator", "Privileged Role Administrator", "Privileged Authentication Administrator",
		"User Administrator", "Exchange Administrator", "Security Administrator", "Conditional Access Administrator", "Authentication Administrator"}
)

func userRoutes() []route {
	return []route{
		{http.MethodGet, "users", permUserRead, thrEntra, (*Tenant).listUsers},
		{http.MethodGet, "users/{}", permUserRead, thrEntra, (*Tenant).getUser},
		{http.MethodPatch, "users/{}", perm{}, thrEntra, (*Tenant).patchUser},
		{http.MethodPost, "users/{}/revokeSignInSessions", permUserRevoke, thrEntra, (*Tenant).revokeSessions},
		{http.MethodGet, "domains", permDomainRead, thrEntra, (*Tenant).listDomains},
		{http.MethodGet, "domains/{}", permDomainRead, thrEntra, (*Tenant).getDomain},
		{http.MethodGet, "directoryRoles", permRoleRead, thrEntra, (*Tenant).listRoles},
		{http.MethodGet, "directoryRoles/{}", permRoleRead, thrEntra, (*Tenant).getRole},
		{http.MethodGet, "directoryRoles/{}/members", permRoleRead, thrEntra, (*Tenant).listRoleMembers},
		{http.MethodGet, "directoryRoles(roleTemplateId='{}')", permRoleRead, thrEntra, (*Tenant).getRole},
		{http.MethodGet, "users/{}/memberOf", permUserRead, thrEntra, (*Tenant).userMemberOf},
	}
}

var defaultUserProps = []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
	"officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"}

// userObj is the full Graph representation (before $select / default props).
func userObj(u *userRec) map[string]any {
	nz := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	return map[string]any{
		"@odata.type": "#microsoft.graph.user", "id": u.ID, "businessPhones": []string{},
		"displayName": u.DisplayName, "givenName": nz(u.GivenName), "jobTitle": nz(u.JobTitle),
		"mail": nz(u.Mail), "mobilePhone": nil, "officeLocation": nz(u.OfficeLocation), "preferredLanguage": nil,
		"surname": nz(u.Surname), "userPrincipalName": u.UserPrincipalName, "accountEnabled": u.AccountEnabled,
		"createdDateTime": graphTime(u.CreatedDateTime), "signInSessionsValidFrom": graphTime(u.SignInSessionsValidFrom),
		"department": nz(u.Department), "userType": u.UserType, "usageLocation": nz(u.UsageLocation),
		"lastPasswordChangeDateTime": nz(graphTime(u.LastPasswordChangeDateTime)),
	}
}

// userView applies Graph's default property set unless $select is given.
func userView(obj map[string]any, sel string) map[string]any {
	if sel != "" {
		out := selectProps(obj, sel)
		delete(out, "@odata.type")
		return out
	}
	out := map[string]any{}
	for _, k := range defaultUserProps {
		out[k] = obj[k]
	}
	return out
}

func (t *Tenant) notFoundEntra(r *req, key string) *resp {
	return t.graphError(r, http.StatusNotFound, "Request_ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", key))
}

func (t *Tenant) listUsers(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.userOrder))
	for _, id := range t.st.userOrder {
		items = append(items, &item{obj: userObj(t.st.users[id])})
	}
	t.mu.Unlock()
	// Advanced query operators need ConsistencyLevel: eventual (and $count).
	if f := strings.ToLower(r.q("$filter")); f != "" && !strings.EqualFold(r.hdr.Get("ConsistencyLevel"), "eventual") {
		for _, op := range []string{"endswith(", " ne ", "not(", "not ", "contains("} {
			if strings.Contains(f, op) {
				return t.graphError(r, http.StatusBadRequest, "Request_UnsupportedQuery",
					fmt.Sprintf("Operator '%s' is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information", strings.Trim(op, " (")))
			}
		}
	}
	sel := r.q("$select")
	res := t.list(r, items, listing{context: "users", defTop: 100, maxTop: 999, entity: "User", schema: userSchema()})
	if res.status != http.StatusOK {
		return res
	}
	// Re-shape each user to the default property set when no $select.
	if sel == "" {
		m := decodeObj(res.body)
		if vals, ok := m["value"].([]any); ok {
			for i, v := range vals {
				if o, ok := v.(map[string]any); ok {
					vals[i] = userView(o, "")
				}
			}
		}
		return jsonResp(http.StatusOK, m)
	}
	m := decodeObj(res.body)
	if vals, ok := m["value"].([]any); ok {
		for _, v := range vals {
			if o, ok := v.(map[string]any); ok {
				delete(o, "@odata.type")
			}
		}
	}
	m["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#users(" + sel + ")"
	return jsonResp(http.StatusOK, m)
}

func (t *Tenant) getUser(r *req, p []string) *resp {
	if res := t.checkQuery(r, userSchema()); res != nil {
		return res
	}
	t.mu.Lock()
	u := t.st.userLocked(p[0])
	var obj map[string]any
	if u != nil {
		obj = userObj(u)
	}
	t.mu.Unlock()
	if u == nil {
		return t.notFoundEntra(r, p[0])
	}
	sel := r.q("$select")
	out := userView(obj, sel)
	ctx := "users/$entity"
	if sel != "" {
		ctx = "users(" + sel + ")/$entity"
	}
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#" + ctx
	return jsonResp(http.StatusOK, out)
}

var patchableUser = map[string]bool{"accountenabled": true, "passwordprofile": true, "displayname": true, "jobtitle": true,
	"department": true, "officelocation": true, "usagelocation": true, "givenname": true, "surname": true, "mobilephone": true,
	"businessphones": true, "@odata.type": true}

func (t *Tenant) isPrivilegedLocked(userID string) bool {
	for _, role := range t.st.roles {
		if slices.Contains(privilegedRoles, role.DisplayName) && slices.Contains(role.Members, userID) {
			return true
		}
	}
	return false
}

// pwdResetRoles are the directory roles with which an app may set another
// user's password app-only: User Administrator and the roles above it
// ("Who can reset passwords",
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/privileged-roles-permissions#who-can-reset-passwords).
var pwdResetRoles = []string{"User Administrator", "Privileged Authentication Administrator", "Global Administrator"}

// appHasRoleLocked reports whether the calling app's service principal holds
// one of the directory roles.
func (t *Tenant) appHasRoleLocked(r *req, roles ...string) bool {
	app := t.st.apps[strings.ToLower(r.tok.AppID)]
	return app != nil && slices.ContainsFunc(app.DirectoryRoles, func(s string) bool { return slices.Contains(roles, s) })
}

func (t *Tenant) patchUser(r *req, p []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	for k := range body {
		if !patchableUser[strings.ToLower(k)] {
			return t.graphError(r, http.StatusBadRequest, "Request_BadRequest",
				fmt.Sprintf("Property '%s' does not exist as a declared property or extension property.", k))
		}
	}
	// Permission depends on what is changed.
	need := []perm{}
	_, hasEnable := body["accountEnabled"]
	_, hasPwd := body["passwordProfile"]
	if hasEnable {
		need = append(need, permUserEnable)
	}
	if hasPwd {
		need = append(need, permUserPwd)
	}
	if len(need) == 0 {
		need = append(need, permUserWrite)
	}
	for _, n := range need {
		if m := n.missing(r.tok.Roles); m != "" {
			return t.forbidden(r, m)
		}
	}
	// User.EnableDisableAccount.All only works together with a read permission.
	if hasEnable && permUserWrite.missing(r.tok.Roles) != "" {
		if m := anyOf("User.Read.All", "Directory.Read.All").missing(r.tok.Roles); m != "" {
			return t.forbidden(r, m)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(p[0])
	if u == nil {
		return t.notFoundEntra(r, p[0])
	}
	// App-only password resets need, besides the permission, at least the
	// User Administrator directory role on the app's service principal:
	// "In app-only access, the calling app must be assigned the
	// User-PasswordProfile.ReadWrite.All permission (least privilege) and at
	// least the User Administrator Microsoft Entra role"
	// (https://learn.microsoft.com/en-us/graph/api/user-update#permissions,
	// passwordProfile property). Graph's 403 does not name the role: it is
	// Authorization_RequestDenied "Insufficient privileges to complete the
	// operation." (public capture:
	// https://learn.microsoft.com/en-us/answers/questions/360090/microsoft-graph).
	if hasPwd && !t.appHasRoleLocked(r, pwdResetRoles...) {
		r.missingPerm = "User Administrator"
		return t.graphError(r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	}
	// Disabling or resetting an administrator is a sensitive action only
	// Privileged Authentication Administrator (or Global Administrator) may
	// take ("Who can perform sensitive actions",
	// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/privileged-roles-permissions#who-can-perform-sensitive-actions).
	if (hasEnable || hasPwd) && t.isPrivilegedLocked(u.ID) {
		if !t.appHasRoleLocked(r, "Privileged Authentication Administrator", "Global Administrator") {
			r.missingPerm = "Privileged Authentication Administrator"
			return t.graphError(r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		}
	}
	if v, ok := body["accountEnabled"]; ok {
		b, ok := v.(bool)
		if !ok {
			return t.graphError(r, http.StatusBadRequest, "Request_BadRequest", "Cannot convert the literal to the expected type 'Edm.Boolean'.")
		}
		u.AccountEnabled = b
	}
	if v, ok := body["passwordProfile"]; ok {
		pp, ok := v.(map[string]any)
		if !ok {
			return t.graphError(r, http.StatusBadRequest, "Request_BadRequest", "Invalid value specified for property 'passwordProfile' of resource 'User'.")
		}
		if pw, ok := pp["password"].(string); ok {
			if !complexPassword(pw) {
				return t.graphError(r, http.StatusBadRequest, "Request_BadRequest", "The specified password does not comply with password complexity requirements. Please provide a different password.")
			}
			u.password = pw
			u.PasswordChanges++
			u.LastPasswordChangeDateTime = t.now()
		}
		if f, ok := pp["forceChangePasswordNextSignIn"].(bool); ok {
			u.ForceChangePasswordNextSignIn = f
		}
	}
	for k, v := range body {
		s, _ := v.(string)
		switch strings.ToLower(k) {
		case "displayname":
			u.DisplayName = s
		case "jobtitle":
			u.JobTitle = s
		case "department":
			u.Department = s
		case "officelocation":
			u.OfficeLocation = s
		case "usagelocation":
			u.UsageLocation = s
		case "givenname":
			u.GivenName = s
		case "surname":
			u.Surname = s
		}
	}
	return noContent()
}

// complexPassword applies Entra's rule: 8–256 chars, three of four classes.
func complexPassword(pw string) bool {
	if len(pw) < 8 || len(pw) > 256 {
		return false
	}
	var lo, up, dg, sy int
	for _, c := range pw {
		switch {
		case c >= 'a' && c <= 'z':
			lo = 1
		case c >= 'A' && c <= 'Z':
			up = 1
		case c >= '0' && c <= '9':
			dg = 1
		default:
			sy = 1
		}
	}
	return lo+up+dg+sy >= 3
}

func (t *Tenant) revokeSessions(r *req, p []string) *resp {
	t.mu.Lock()
	u := t.st.userLocked(p[0])
	if u != nil {
		u.SignInSessionsValidFrom = t.now()
		u.RevokeCount++
	}
	t.mu.Unlock()
	if u == nil {
		return t.notFoundEntra(r, p[0])
	}
	return jsonResp(http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true})
}

// ---- domains and directory roles ----

func (t *Tenant) listDomains(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.domains))
	for _, d := range t.st.domains {
		items = append(items, &item{obj: cloneObj(d)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: "domains", defTop: 1000, maxTop: 1000})
}

func (t *Tenant) getDomain(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range t.st.domains {
		if strings.EqualFold(str(d, "id"), p[0]) {
			o := cloneObj(d)
			o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#domains/$entity"
			return jsonResp(http.StatusOK, o)
		}
	}
	return t.notFoundEntra(r, p[0])
}

func roleObj(d *dirRole) map[string]any {
	return map[string]any{"id": d.ID, "deletedDateTime": nil, "description": d.Description, "displayName": d.DisplayName, "roleTemplateId": d.TemplateID}
}

func (t *Tenant) listRoles(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.roles))
	for _, d := range t.st.roles {
		items = append(items, &item{obj: roleObj(d)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: "directoryRoles", defTop: 1000, maxTop: 1000, schema: directoryRoleSchema()})
}

func (t *Tenant) roleLocked(key string) *dirRole {
	key = strings.TrimSuffix(strings.TrimPrefix(key, "roleTemplateId='"), "'")
	for _, d := range t.st.roles {
		if strings.EqualFold(d.ID, key) || strings.EqualFold(d.TemplateID, key) {
			return d
		}
	}
	return nil
}

func (t *Tenant) getRole(r *req, p []string) *resp {
	if res := t.checkQuery(r, directoryRoleSchema()); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.roleLocked(p[0])
	if d == nil {
		return t.notFoundEntra(r, p[0])
	}
	o := roleObj(d)
	o["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#directoryRoles/$entity"
	return jsonResp(http.StatusOK, o)
}

func (t *Tenant) listRoleMembers(r *req, p []string) *resp {
	t.mu.Lock()
	d := t.roleLocked(p[0])
	var items []*item
	if d != nil {
		for _, m := range d.Members {
			if u := t.st.users[m]; u != nil {
				o := userView(userObj(u), "")
				o["@odata.type"] = "#microsoft.graph.user"
				items = append(items, &item{obj: o})
			}
		}
	}
	t.mu.Unlock()
	if d == nil {
		return t.notFoundEntra(r, p[0])
	}
	return t.list(r, items, listing{context: "directoryObjects", defTop: 100, maxTop: 999})
}

func (t *Tenant) userMemberOf(r *req, p []string) *resp {
	t.mu.Lock()
	u := t.st.userLocked(p[0])
	var items []*item
	if u != nil {
		for _, d := range t.st.roles {
			if slices.Contains(d.Members, u.ID) {
				o := roleObj(d)
				o["@odata.type"] = "#microsoft.graph.directoryRole"
				items = append(items, &item{obj: o})
			}
		}
	}
	t.mu.Unlock()
	if u == nil {
		return t.notFoundEntra(r, p[0])
	}
	return t.list(r, items, listing{context: "directoryObjects", defTop: 100, maxTop: 999})
}

// Role template ids (well-known, identical in every tenant).
var roleTemplates = map[string]string{
	"Global Administrator":                    "62e90394-69f5-4237-9190-012177145e10",
	"Privileged Role Administrator":           "e8611ab8-c189-46e8-94e1-60213ab1f814",
	"Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
	"User Administrator":                      "fe930be7-5e62-47db-91af-98c3a49a38b1",
	"Exchange Administrator":                  "29232cdf-9323-42fd-ade2-1d097af3e4de",
	"Security Administrator":                  "194ae4cb-b126-40b2-bd5b-6091b380977d",
	"Security Reader":                         "5d6b6bb7-de71-4623-b4af-96380a352509",
	"Conditional Access Administrator":        "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
	"Helpdesk Administrator":                  "729827e3-9c14-49f7-bb1b-9608f156bbb8",
	"Authentication Administrator":            "c4e39bd9-1100-46d3-8c65-fb160da0071f",
}

// AddRoleMember makes a user a member of an activated directory role
// (activating the role when needed).
func (t *Tenant) AddRoleMember(roleName, idOrUPN string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addRoleMemberLocked(roleName, idOrUPN)
}

func (t *Tenant) addRoleMemberLocked(roleName, idOrUPN string) error {
	u := t.st.userLocked(idOrUPN)
	if u == nil {
		return fmt.Errorf("m365sim: no user %q", idOrUPN)
	}
	d := t.roleByNameLocked(roleName)
	if !slices.Contains(d.Members, u.ID) {
		d.Members = append(d.Members, u.ID)
	}
	return nil
}

func (t *Tenant) roleByNameLocked(name string) *dirRole {
	for _, d := range t.st.roles {
		if strings.EqualFold(d.DisplayName, name) {
			return d
		}
	}
	tid := roleTemplates[name]
	if tid == "" {
		tid = newGUID()
	}
	d := &dirRole{ID: newGUID(), DisplayName: name, TemplateID: tid, Description: "Can manage " + strings.ToLower(name) + " features."}
	t.st.roles = append(t.st.roles, d)
	return d
}

// AddDomain adds a verified domain.
func (t *Tenant) AddDomain(name string, isDefault bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addDomainLocked(name, isDefault)
}

func (t *Tenant) addDomainLocked(name string, isDefault bool) {
	t.st.domains = append(t.st.domains, map[string]any{
		"id": name, "authenticationType": "Managed", "availabilityStatus": nil, "isAdminManaged": true,
		"isDefault": isDefault, "isInitial": strings.HasSuffix(name, ".onmicrosoft.com"), "isRoot": true, "isVerified": true,
		"passwordNotificationWindowInDays": 14, "passwordValidityPeriodInDays": 2147483647,
		"supportedServices": []string{"Email", "OfficeCommunicationsOnline"}, "state": nil,
	})
}
