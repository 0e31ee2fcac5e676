package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The Exchange Online admin API: the REST endpoint the ExchangeOnlineManagement
// v3 module sends cmdlets to, POST /adminapi/beta/{tenant}/InvokeCommand with
// {"CmdletInput":{"CmdletName":…,"Parameters":{…}}}. Get-Mailbox and
// Set-Mailbox (forwarding only) act on the mailbox state that
// InjectMailboxForwarding sets and User reports.

const (
	exoResource = "https://outlook.office365.com"
	exoAppID    = "00000002-0000-0ff1-ce00-000000000000"
	// exoRole is the Exchange application permission for app-only admin calls.
	exoRole = "Exchange.ManageAsApp"
	// exoDC names the directory server in "couldn't be found on" messages.
	exoDC = "AM0PR10A03DC001.EURPR10A003.PROD.OUTLOOK.COM"
)

// Directory roles of the app's service principal that grant the mailbox
// cmdlets (read: also the reader roles).
var (
	exoWriteRoles = []string{"Exchange Recipient Administrator", "Exchange Administrator", "Global Administrator"}
	exoReadRoles  = append([]string{"Global Reader", "Security Reader"}, exoWriteRoles...)
)

const wwwAuthExo = `Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", error="invalid_token"`

// exoError is the admin API's OData error; detail, when set, is
// "ErrorId|ExceptionType|text" as Exchange puts a cmdlet's failure.
func (t *Tenant) exoError(r *req, status int, code, msg, detail string) *resp {
	if msg == "" {
		msg = "Error executing cmdlet"
	}
	e := map[string]any{"code": code, "message": msg,
		"innererror": map[string]any{"message": msg, "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}}
	if detail != "" {
		e["details"] = []any{map[string]any{"code": "Client", "target": "", "message": detail}}
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	res := newResp(status)
	res.body = b
	res.hdr.Set("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8")
	return res
}

func (t *Tenant) exoNotFound(r *req, identity string) *resp {
	return t.exoError(r, http.StatusNotFound, "NotFound", "", "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|"+
		fmt.Sprintf("The operation couldn't be performed because object '%s' couldn't be found on '%s'.", identity, exoDC))
}

func (t *Tenant) exoBadParam(r *req, msg string) *resp {
	return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimParameterBinding|System.Management.Automation.ParameterBindingException|"+msg)
}

// exoAdmin serves /adminapi/beta/{tenant}/InvokeCommand.
func (t *Tenant) exoAdmin(r *req) *resp {
	if a := t.authenticate(r, exoResource); a != nil {
		return a
	}
	if len(r.segs) != 3 || !strings.EqualFold(r.segs[0], "beta") || !strings.EqualFold(r.segs[2], "InvokeCommand") {
		return t.exoError(r, http.StatusNotFound, "NotFound", "The requested resource does not exist.", "")
	}
	if !t.isTenantName(r.segs[1]) {
		return t.exoError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The tenant '%s' does not match the token's tenant.", r.segs[1]), "")
	}
	if r.method != http.MethodPost {
		return t.exoError(r, http.StatusMethodNotAllowed, "MethodNotAllowed", "The HTTP method is not allowed for InvokeCommand.", "")
	}
	if !slices.Contains(r.tok.Roles, exoRole) {
		return t.forbidden(r, exoRole)
	}
	var in struct {
		CmdletInput struct {
			CmdletName string         `json:"CmdletName"`
			Parameters map[string]any `json:"Parameters"`
		} `json:"CmdletInput"`
	}
	if err := json.Unmarshal(r.body, &in); err != nil || in.CmdletInput.CmdletName == "" {
		return t.exoError(r, http.StatusBadRequest, "BadRequest", "The request body must be {\"CmdletInput\":{\"CmdletName\":…,\"Parameters\":{…}}}.", "")
	}
	cmdlet := in.CmdletInput.CmdletName
	params := map[string]any{}
	for k, v := range in.CmdletInput.Parameters {
		params[strings.ToLower(k)] = v
	}
	if res, ok := t.exoTABL(r, cmdlet, params); ok {
		return res
	}
	need := exoWriteRoles
	if strings.HasPrefix(strings.ToLower(cmdlet), "get-") {
		need = exoReadRoles
	}
	t.mu.Lock()
	app := t.st.apps[strings.ToLower(r.tok.AppID)]
	allowed := app != nil && slices.ContainsFunc(app.DirectoryRoles, func(s string) bool { return slices.Contains(need, s) })
	t.mu.Unlock()
	if !allowed {
		r.missingPerm = "Exchange role (" + need[0] + ")"
		return t.exoError(r, http.StatusForbidden, "Forbidden", "", "ExSimAccessDenied|Microsoft.Exchange.Management.Tasks.CmdletAccessDeniedException|"+
			fmt.Sprintf("The application has no Exchange role that allows %s: assign %s to its service principal.", cmdlet, strings.Join(need[:2], " or ")))
	}
	switch strings.ToLower(cmdlet) {
	case "get-mailbox":
		return t.exoGetMailbox(r, params)
	case "set-mailbox":
		return t.exoSetMailbox(r, params)
	}
	return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimCommandNotFound|System.Management.Automation.CommandNotFoundException|"+
		fmt.Sprintf("The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable program.", cmdlet))
}

// isTenantName accepts the tenant id or one of its domains, as Exchange does.
func (t *Tenant) isTenantName(s string) bool {
	if strings.EqualFold(s, t.opts.TenantID) {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range t.st.domains {
		if strings.EqualFold(str(d, "id"), s) {
			return true
		}
	}
	return false
}

func exoAlias(u *userRec) string {
	a, _, _ := strings.Cut(u.UserPrincipalName, "@")
	return strings.ToLower(a)
}

// exoRecipientLocked resolves an Exchange identity as Get-Mailbox -Identity
// does: "Name, Alias, Distinguished name (DN), Canonical DN, Domain\Username,
// Email address, GUID, LegacyExchangeDN, SamAccountName, User ID or user
// principal name (UPN)"
// (https://learn.microsoft.com/powershell/module/exchange/get-mailbox#-identity).
// Exchange Online spells the canonical name in its path form
// "NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen"
// (seen in the ObjectId of real admin audit records, e.g. the public SEKOIA
// capture inbox_rule.json, whose last segment is the object id), the DN as
// "CN=megan.bowen,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=…".
// Either names the tenant's domain, which must be one of this tenant's.
func (t *Tenant) exoRecipientLocked(id string) *userRec {
	id = strings.TrimSpace(id)
	if len(id) > 5 && strings.EqualFold(id[:5], "smtp:") {
		id = id[5:]
	}
	if name, dom, ok := exoPathName(id); ok {
		if !t.isTenantDomainLocked(dom) {
			return nil
		}
		id = name
	}
	if u := t.st.userLocked(id); u != nil && u.mbox != nil {
		return u
	}
	for _, uid := range t.st.userOrder {
		u := t.st.users[uid]
		if u.mbox == nil {
			continue
		}
		if strings.EqualFold(u.Mail, id) || strings.EqualFold(exoAlias(u), id) || strings.EqualFold(u.DisplayName, id) ||
			strings.EqualFold(exoLegacyDN(u), id) || strings.EqualFold(exoGUID(u), id) {
			return u
		}
	}
	return nil
}

// exoHostedOrgs is the container of every Exchange Online tenant's objects.
const exoHostedOrgs = "Microsoft Exchange Hosted Organizations"

// exoPathName reads the canonical (path) form or the DN form of an Exchange
// identity: the object's name and the tenant domain it names.
func exoPathName(id string) (name, domain string, ok bool) {
	if parts := strings.Split(id, "/"); len(parts) >= 3 && !strings.HasPrefix(id, "/") {
		for i := 0; i+2 < len(parts); i++ {
			if strings.EqualFold(parts[i], exoHostedOrgs) {
				return strings.Join(parts[i+2:], "/"), parts[i+1], true
			}
		}
	}
	// Without the server and container: "contoso.onmicrosoft.com/megan.bowen".
	if parts := strings.Split(id, "/"); len(parts) == 2 && strings.Contains(parts[0], ".") {
		return parts[1], parts[0], true
	}
	if len(id) > 3 && strings.EqualFold(id[:3], "CN=") {
		rdns := strings.Split(id, ",")
		if len(rdns) >= 3 && len(rdns[1]) > 3 && strings.EqualFold(rdns[1][:3], "OU=") &&
			strings.EqualFold(strings.TrimSpace(rdns[2]), "OU="+exoHostedOrgs) {
			return rdns[0][3:], rdns[1][3:], true
		}
	}
	return "", "", false
}

// isTenantDomainLocked: the tenant id or one of its domains.
func (t *Tenant) isTenantDomainLocked(s string) bool {
	if strings.EqualFold(s, t.opts.TenantID) {
		return true
	}
	for _, d := range t.st.domains {
		if strings.EqualFold(str(d, "id"), s) {
			return true
		}
	}
	return false
}

// exoLegacyDN is the mailbox's legacyExchangeDN in Exchange Online's form
// (/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=<hex>-<alias>).
func exoLegacyDN(u *userRec) string {
	hex := strings.ReplaceAll(u.ID, "-", "")
	if len(hex) > 32 {
		hex = hex[:32]
	}
	return "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=" + hex + "-" + exoAlias(u)
}

// exoGUID is the mailbox's own GUID (ExchangeGuid), distinct from the user's
// object id: derived from it so that it is stable.
func exoGUID(u *userRec) string {
	if len(u.ID) != 36 {
		return ""
	}
	return "e" + u.ID[1:]
}

func exoMailboxObj(u *userRec) map[string]any {
	nz := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	alias := exoAlias(u)
	return map[string]any{
		"Identity": alias, "Name": alias, "Alias": alias, "DisplayName": u.DisplayName,
		"UserPrincipalName": u.UserPrincipalName, "PrimarySmtpAddress": u.Mail,
		"ExternalDirectoryObjectId": u.ID, "RecipientTypeDetails": "UserMailbox",
		"LegacyExchangeDN": exoLegacyDN(u), "ExchangeGuid": exoGUID(u),
		"ForwardingSmtpAddress": nz(u.ForwardingSmtpAddress), "ForwardingAddress": nz(u.ForwardingAddress),
		"DeliverToMailboxAndForward": u.DeliverToMailboxAndForward,
	}
}

func (t *Tenant) exoResult(values []any, warnings []string) *resp {
	out := map[string]any{
		"@odata.context": t.base + "/adminapi/beta/" + t.opts.TenantID + "/$metadata#Collection(Exchange.GenericHashTable)",
		"value":          values,
	}
	if len(warnings) > 0 {
		out["@adminapi.warnings"] = warnings
	}
	return jsonResp(http.StatusOK, out)
}

func (t *Tenant) exoGetMailbox(r *req, params map[string]any) *resp {
	for k := range params {
		switch k {
		case "identity", "resultsize":
		default:
			return t.exoBadParam(r, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'.", k))
		}
	}
	sel := r.q("$select")
	view := func(u *userRec) any {
		obj := exoMailboxObj(u)
		if sel == "" {
			return obj
		}
		out := map[string]any{}
		for _, p := range strings.Split(sel, ",") {
			for k, v := range obj {
				if strings.EqualFold(k, strings.TrimSpace(p)) {
					out[k] = v
				}
			}
		}
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := params["identity"]; ok {
		id, _ := v.(string)
		u := t.exoRecipientLocked(id)
		if u == nil {
			return t.exoNotFound(r, id)
		}
		return t.exoResult([]any{view(u)}, nil)
	}
	var all []any
	for _, uid := range t.st.userOrder {
		if u := t.st.users[uid]; u.mbox != nil {
			all = append(all, view(u))
		}
	}
	return t.exoResult(all, nil)
}

// exoBool reads a SwitchParameter / Boolean as PowerShell binds it.
func exoBool(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case string:
		switch strings.ToLower(b) {
		case "true", "$true":
			return true, true
		case "false", "$false", "":
			return false, true
		}
	case nil:
		return false, true
	}
	return false, false
}

func (t *Tenant) exoSetMailbox(r *req, params map[string]any) *resp {
	for k := range params {
		switch k {
		case "identity", "forwardingsmtpaddress", "forwardingaddress", "delivertomailboxandforward", "confirm", "force":
		default:
			return t.exoBadParam(r, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'.", k))
		}
	}
	id, _ := params["identity"].(string)
	if strings.TrimSpace(id) == "" {
		return t.exoBadParam(r, "Cannot process command because of one or more missing mandatory parameters: Identity.")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.exoRecipientLocked(id)
	if u == nil {
		return t.exoNotFound(r, id)
	}
	smtp, addr, deliver := u.ForwardingSmtpAddress, u.ForwardingAddress, u.DeliverToMailboxAndForward
	if v, ok := params["forwardingsmtpaddress"]; ok {
		s, isStr := v.(string)
		if v != nil && !isStr {
			return t.exoBadParam(r, "Cannot process argument transformation on parameter 'ForwardingSmtpAddress'. The value must be a string.")
		}
		s = strings.TrimSpace(s)
		if len(s) >= 5 && strings.EqualFold(s[:5], "smtp:") {
			s = s[5:]
		}
		if s == "" {
			smtp = ""
		} else {
			local, dom, ok := strings.Cut(s, "@")
			if !ok || local == "" || !strings.Contains(dom, ".") || strings.ContainsAny(s, " ;,<>") {
				return t.exoBadParam(r, fmt.Sprintf("Cannot process argument transformation on parameter 'ForwardingSmtpAddress'. \"%s\" is not a valid SMTP address.", s))
			}
			smtp = "smtp:" + s
		}
	}
	if v, ok := params["forwardingaddress"]; ok {
		s, isStr := v.(string)
		if v != nil && !isStr {
			return t.exoBadParam(r, "Cannot process argument transformation on parameter 'ForwardingAddress'. The value must be a string.")
		}
		if s = strings.TrimSpace(s); s == "" {
			addr = ""
		} else {
			to := t.exoRecipientLocked(s)
			if to == nil {
				return t.exoError(r, http.StatusNotFound, "NotFound", "", "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|"+
					fmt.Sprintf("Couldn't find object \"%s\". Please make sure that it was spelled correctly or specify a different object.", s))
			}
			addr = exoAlias(to)
		}
	}
	if v, ok := params["delivertomailboxandforward"]; ok {
		b, ok := exoBool(v)
		if !ok {
			return t.exoBadParam(r, "Cannot process argument transformation on parameter 'DeliverToMailboxAndForward'. The value must be a Boolean.")
		}
		deliver = b
	}
	var warnings []string
	if smtp == u.ForwardingSmtpAddress && addr == u.ForwardingAddress && deliver == u.DeliverToMailboxAndForward {
		warnings = append(warnings, fmt.Sprintf("The command completed successfully but no settings of '%s' have been modified.", exoAlias(u)))
	}
	u.ForwardingSmtpAddress, u.ForwardingAddress, u.DeliverToMailboxAndForward = smtp, addr, deliver
	return t.exoResult([]any{}, warnings)
}
