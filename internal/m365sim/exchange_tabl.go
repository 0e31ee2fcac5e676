package m365sim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The Tenant Allow/Block List cmdlets for senders, through the same Exchange
// Online admin API (InvokeCommand) as Get-Mailbox:
//
//	New-TenantAllowBlockListItems -ListType Sender -Block -Entries … -ExpirationDate|-NoExpiration [-Notes]
//	Get-TenantAllowBlockListItems -ListType Sender [-Block] [-Entry …]
//	Remove-TenantAllowBlockListItems -ListType Sender -Ids …
//
// (https://learn.microsoft.com/powershell/module/exchangepowershell/new-tenantallowblocklistitems,
// …/get-tenantallowblocklistitems, …/remove-tenantallowblocklistitems). Only
// the Sender list type is served; the behaviours and limits, each from
// https://learn.microsoft.com/defender-office-365/tenant-allow-block-list-email-spoof-configure
// ("Allow or block email using the Tenant Allow/Block List"):
//
//   - an entry is an e-mail address or a domain;
//   - block entries: at most 500 in an organisation without Defender for
//     Office 365 (TABLBlockLimit; 1,000 with Plan 1, 10,000 with Plan 2);
//   - at most 20 entries in one addition (the portal's "up to a maximum of
//     20"), a limit the emulator applies to -Entries;
//   - a block entry's specific expiration date is at most 90 days from today
//     ("Specific date: The maximum value is 90 days from today"), and it
//     cannot lie in the past; -ExpirationDate and -NoExpiration exclude each
//     other (the cmdlet's two parameter sets), and a block entry needs one of
//     them (the syntax "<-ExpirationDate Date | -NoExpiration>");
//   - the roles: Security Administrator or Organization Management, or the
//     Tenant AllowBlockList Manager role (Security Operator) to add and
//     remove; Global Reader and Security Reader to read.

// TABLBlockLimit is the most sender block entries of the emulated tenant (an
// organisation without Defender for Office 365).
const TABLBlockLimit = 500

const (
	tablMaxEntries = 20
	tablMaxExpiry  = 90 * 24 * time.Hour
)

// Directory roles that grant the Tenant Allow/Block List cmdlets.
var (
	tablWriteRoles = []string{"Security Administrator", "Exchange Administrator", "Global Administrator", "Security Operator"}
	tablReadRoles  = append([]string{"Global Reader", "Security Reader"}, tablWriteRoles...)
)

// TABLEntry is one Tenant Allow/Block List entry as Get-TenantAllowBlockListItems
// reports it.
type TABLEntry struct {
	Identity       string
	Value          string
	Action         string // Block or Allow
	ListType       string // Sender
	ExpirationDate time.Time
	NoExpiration   bool
	Notes          string
	LastModified   time.Time
}

var (
	tablAddrRE   = regexp.MustCompile(`^[a-z0-9!#$%&'*+/=?^_{|}~.-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$`)
	tablDomainRE = regexp.MustCompile(`^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$`)
)

// TABLSenders returns the sender entries (tests and the demo read the list
// here as well as through Get-TenantAllowBlockListItems).
func (t *Tenant) TABLSenders() []TABLEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TABLEntry, 0, len(t.st.tabl))
	for _, e := range t.st.tabl {
		out = append(out, *e)
	}
	return out
}

// AddTABLSender adds a sender block entry directly (a block someone else
// created, for tests).
func (t *Tenant) AddTABLSender(value, notes string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &TABLEntry{Identity: tablID(), Value: strings.ToLower(value), Action: "Block", ListType: "Sender", NoExpiration: true, Notes: notes, LastModified: t.now()}
	t.st.tabl = append(t.st.tabl, e)
	return e.Identity
}

// tablID is an entry identity in the form Exchange shows
// ("RgAAAAAI8gSyI_NmQqzeh-HXJBywBwCqfQNJY8hBTbdlKFkv6BcUAAAl_QCZAACqfQNJY8hBTbdlKFkv6BcUAAAl_oSRAAAA").
func tablID() string {
	b := make([]byte, 66)
	_, _ = rand.Read(b)
	return "RgAAAA" + base64.RawURLEncoding.EncodeToString(b)
}

func tablObj(e *TABLEntry) map[string]any {
	var exp any
	if !e.NoExpiration {
		exp = e.ExpirationDate.UTC().Format(time.RFC3339)
	}
	return map[string]any{
		"Identity": e.Identity, "Value": e.Value, "Action": e.Action, "ListType": e.ListType, "ListSubType": "Tenant",
		"ExpirationDate": exp, "Notes": e.Notes, "LastModifiedDateTime": e.LastModified.UTC().Format(time.RFC3339),
		"ModifiedBy": "Responder", "SysManaged": false, "Error": nil,
	}
}

// exoTABL serves the Tenant Allow/Block List cmdlets; ok is false for any
// other cmdlet. It checks the TABL roles itself.
func (t *Tenant) exoTABL(r *req, cmdlet string, params map[string]any) (*resp, bool) {
	var run func(*req, map[string]any) *resp
	need := tablWriteRoles
	switch strings.ToLower(cmdlet) {
	case "new-tenantallowblocklistitems":
		run = t.tablNew
	case "get-tenantallowblocklistitems":
		run, need = t.tablGet, tablReadRoles
	case "remove-tenantallowblocklistitems":
		run = t.tablRemove
	default:
		return nil, false
	}
	t.mu.Lock()
	app := t.st.apps[strings.ToLower(r.tok.AppID)]
	allowed := app != nil && slices.ContainsFunc(app.DirectoryRoles, func(s string) bool { return slices.Contains(need, s) })
	t.mu.Unlock()
	if !allowed {
		r.missingPerm = "Exchange role (" + need[0] + ")"
		return t.exoError(r, http.StatusForbidden, "Forbidden", "", "ExSimAccessDenied|Microsoft.Exchange.Management.Tasks.CmdletAccessDeniedException|"+
			fmt.Sprintf("The application has no role that allows %s: assign %s to its service principal.", cmdlet, need[0])), true
	}
	if lt, _ := params["listtype"].(string); !strings.EqualFold(lt, "Sender") {
		if lt == "" {
			return t.exoBadParam(r, "Cannot process command because of one or more missing mandatory parameters: ListType."), true
		}
		return t.exoBadParam(r, fmt.Sprintf("The emulator serves only -ListType Sender (got '%s').", lt)), true
	}
	return run(r, params), true
}

// tablStrings reads a String[] parameter (a JSON array, or one string).
func tablStrings(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func (t *Tenant) tablNew(r *req, params map[string]any) *resp {
	for k := range params {
		switch k {
		case "listtype", "block", "allow", "entries", "expirationdate", "noexpiration", "notes", "outputjson", "logextradetails":
		default:
			return t.exoBadParam(r, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'.", k))
		}
	}
	block, _ := exoBool(params["block"])
	allow, _ := exoBool(params["allow"])
	if block == allow {
		return t.exoBadParam(r, "Specify exactly one of the Allow and Block switches.")
	}
	if allow {
		// Allow entries for senders are created through submissions, not here.
		return t.exoBadParam(r, "The emulator serves sender block entries only.")
	}
	entries, ok := tablStrings(params["entries"])
	if !ok || len(entries) == 0 {
		return t.exoBadParam(r, "Cannot process command because of one or more missing mandatory parameters: Entries.")
	}
	if len(entries) > tablMaxEntries {
		return t.exoBadParam(r, fmt.Sprintf("You can add up to %d entries at a time (got %d).", tablMaxEntries, len(entries)))
	}
	noExp, _ := exoBool(params["noexpiration"])
	expRaw, hasExp := params["expirationdate"]
	if hasExp && noExp {
		return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimParameterSet|System.Management.Automation.ParameterBindingException|Parameter set cannot be resolved using the specified named parameters. One or more parameters issued cannot be used together or an insufficient number of parameters were provided.")
	}
	if !hasExp && !noExp {
		return t.exoBadParam(r, "A block entry needs either ExpirationDate or NoExpiration.")
	}
	now := t.now()
	var exp time.Time
	if hasExp {
		s, _ := expRaw.(string)
		var err error
		if exp, err = time.Parse(time.RFC3339, strings.TrimSpace(s)); err != nil {
			return t.exoBadParam(r, fmt.Sprintf("Cannot process argument transformation on parameter 'ExpirationDate'. Cannot convert value \"%s\" to type \"System.DateTime\".", s))
		}
		if !exp.After(now) {
			return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimInvalidExpiration|Microsoft.Exchange.Management.Tasks.ValidationException|The expiration date must be in the future.")
		}
		if exp.Sub(now) > tablMaxExpiry+time.Minute {
			return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimInvalidExpiration|Microsoft.Exchange.Management.Tasks.ValidationException|The expiration date of a block entry can be at most 90 days from today.")
		}
	}
	notes, _ := params["notes"].(string)
	if len(notes) > 1000 {
		notes = notes[:1000]
	}
	vals := make([]string, len(entries))
	for i, e := range entries {
		v := strings.ToLower(strings.TrimSpace(e))
		if !tablAddrRE.MatchString(v) && !tablDomainRE.MatchString(v) {
			return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimInvalidEntry|Microsoft.Exchange.Management.Tasks.ValidationException|"+
				fmt.Sprintf("The entry '%s' is not a valid e-mail address or domain.", e))
		}
		vals[i] = v
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	blocks := 0
	for _, e := range t.st.tabl {
		if e.Action == "Block" {
			blocks++
		}
	}
	var out []any
	for _, v := range vals {
		if i := slices.IndexFunc(t.st.tabl, func(e *TABLEntry) bool { return e.Value == v && e.Action == "Block" }); i >= 0 {
			// An existing entry is updated in place rather than duplicated.
			e := t.st.tabl[i]
			e.ExpirationDate, e.NoExpiration, e.Notes, e.LastModified = exp, noExp, notes, now
			out = append(out, tablObj(e))
			continue
		}
		if blocks >= TABLBlockLimit {
			return t.exoError(r, http.StatusBadRequest, "BadRequest", "", "ExSimLimitExceeded|Microsoft.Exchange.Management.Tasks.ValidationException|"+
				fmt.Sprintf("The maximum number of block entries (%d) for domains and email addresses has been reached.", TABLBlockLimit))
		}
		blocks++
		e := &TABLEntry{Identity: tablID(), Value: v, Action: "Block", ListType: "Sender", ExpirationDate: exp, NoExpiration: noExp, Notes: notes, LastModified: now}
		t.st.tabl = append(t.st.tabl, e)
		out = append(out, tablObj(e))
	}
	return t.exoResult(out, nil)
}

// tablExpireLocked drops entries past their expiration date, as the service
// removes them.
func (t *Tenant) tablExpireLocked(now time.Time) {
	t.st.tabl = slices.DeleteFunc(t.st.tabl, func(e *TABLEntry) bool { return !e.NoExpiration && !e.ExpirationDate.After(now) })
}

func (t *Tenant) tablGet(r *req, params map[string]any) *resp {
	for k := range params {
		switch k {
		case "listtype", "block", "allow", "entry", "noexpiration", "expirationdate", "outputjson":
		default:
			return t.exoBadParam(r, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'.", k))
		}
	}
	block, _ := exoBool(params["block"])
	allow, _ := exoBool(params["allow"])
	entry, _ := params["entry"].(string)
	entry = strings.ToLower(strings.TrimSpace(entry))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tablExpireLocked(t.now())
	out := []any{}
	for _, e := range t.st.tabl {
		if (block && e.Action != "Block") || (allow && e.Action != "Allow") || (entry != "" && e.Value != entry) {
			continue
		}
		out = append(out, tablObj(e))
	}
	return t.exoResult(out, nil)
}

func (t *Tenant) tablRemove(r *req, params map[string]any) *resp {
	for k := range params {
		switch k {
		case "listtype", "ids", "entries", "outputjson", "listsubtype":
		default:
			return t.exoBadParam(r, fmt.Sprintf("A parameter cannot be found that matches parameter name '%s'.", k))
		}
	}
	ids, ok := tablStrings(params["ids"])
	if !ok || len(ids) == 0 {
		return t.exoBadParam(r, "Cannot process command because of one or more missing mandatory parameters: Ids.")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if !slices.ContainsFunc(t.st.tabl, func(e *TABLEntry) bool { return e.Identity == id }) {
			return t.exoNotFound(r, id)
		}
	}
	t.st.tabl = slices.DeleteFunc(t.st.tabl, func(e *TABLEntry) bool { return slices.Contains(ids, e.Identity) })
	return t.exoResult([]any{}, nil)
}
