package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// Version of the action request message.
const Version = 1

// Name is an action's message name (disable_user); its CLI name uses dashes.
type Name string

// The catalogue.
const (
	DisableUser         Name = "disable_user"
	EnableUser          Name = "enable_user"
	RevokeSessions      Name = "revoke_sessions"
	ResetPassword       Name = "reset_password"
	ConfirmCompromised  Name = "confirm_compromised"
	DismissRisk         Name = "dismiss_risk"
	DisableForwardRules Name = "disable_forward_rules"
	EnableForwardRules  Name = "enable_forward_rules"
	DeleteForwardRules  Name = "delete_forward_rules"
	RestoreForwardRules Name = "restore_forward_rules"
	// Mailbox-level forwarding (Set-Mailbox), through the Exchange Online
	// admin API: Microsoft Graph does not expose it.
	RemoveMailboxForwarding  Name = "remove_mailbox_forwarding"
	RestoreMailboxForwarding Name = "restore_mailbox_forwarding"
	PurgeMail                Name = "purge_mail"
	BlockIP                  Name = "block_ip"
	UnblockIP                Name = "unblock_ip"
	Undo                     Name = "undo"
)

// Spec describes one catalogue entry.
type Spec struct {
	Name        Name
	Target      string // "user", "ip", "message", "request"
	Description string
	// Inverse is the action that undoes this one ("" when irreversible).
	Inverse Name
	// Irreversible says why an action cannot be undone (when Inverse is "").
	Irreversible string
	// Permission is the least-privileged Graph application permission it needs
	// (besides the read permissions named in Reads).
	Permission string
	// Reads are the read permissions it needs as well.
	Reads string
	// Calls are the Graph calls it makes, for the README.
	Calls string
	// Params are the parameter names it accepts.
	Params []string
}

// ExchangePermission is what the Exchange Online admin API actions need: the
// Office 365 Exchange Online application permission Exchange.ManageAsApp and an
// Exchange administrator role (Exchange Administrator, or the narrower Exchange
// Recipient Administrator) assigned to the app's service principal.
const ExchangePermission = "Exchange.ManageAsApp (Office 365 Exchange Online) + the Exchange Recipient Administrator (or Exchange Administrator) role"

var catalogue = map[Name]Spec{
	DisableUser: {
		Name: DisableUser, Target: "user", Inverse: EnableUser,
		Description: "block sign-in: PATCH accountEnabled=false",
		Permission:  "User.EnableDisableAccount.All", Reads: "User.Read.All",
		Calls: "GET /users/{id}?$select=id,userPrincipalName,accountEnabled; PATCH /users/{id} (both in $batch)",
	},
	EnableUser: {
		Name: EnableUser, Target: "user", Inverse: DisableUser,
		Description: "allow sign-in again: PATCH accountEnabled=true",
		Permission:  "User.EnableDisableAccount.All", Reads: "User.Read.All",
		Calls: "GET /users/{id}?$select=id,userPrincipalName,accountEnabled; PATCH /users/{id} (both in $batch)",
	},
	RevokeSessions: {
		Name: RevokeSessions, Target: "user",
		Irreversible: "revoked sessions cannot be restored; the user signs in again",
		Description:  "invalidate refresh tokens and session cookies: revokeSignInSessions",
		Permission:   "User.RevokeSessions.All",
		Calls:        "POST /users/{id}/revokeSignInSessions (in $batch)",
	},
	ResetPassword: {
		Name: ResetPassword, Target: "user",
		Irreversible: "the previous password is unknown and cannot be restored",
		Description:  "set a generated strong password and force a change at next sign-in",
		Permission:   "User-PasswordProfile.ReadWrite.All",
		Calls:        "PATCH /users/{id} {passwordProfile}",
	},
	ConfirmCompromised: {
		Name: ConfirmCompromised, Target: "user",
		Irreversible: "Identity Protection has no 'unconfirm'; dismiss_risk clears the risk instead",
		Description:  "mark the user compromised in Identity Protection (risk high)",
		Permission:   "IdentityRiskyUser.ReadWrite.All", Reads: "User.Read.All",
		Calls: "GET /users/{id}?$select=id; GET /identityProtection/riskyUsers/{id}; POST /identityProtection/riskyUsers/confirmCompromised",
	},
	DismissRisk: {
		Name: DismissRisk, Target: "user",
		Irreversible: "dismissed risk cannot be restored; confirm_compromised raises it again",
		Description:  "dismiss the user's risk in Identity Protection",
		Permission:   "IdentityRiskyUser.ReadWrite.All", Reads: "User.Read.All",
		Calls: "GET /users/{id}?$select=id; GET /identityProtection/riskyUsers/{id}; POST /identityProtection/riskyUsers/dismiss",
	},
	DisableForwardRules: {
		Name: DisableForwardRules, Target: "user", Inverse: EnableForwardRules,
		Description: "disable every inbox rule that forwards, redirects or forwards as attachment",
		Permission:  "MailboxSettings.ReadWrite",
		Calls:       "GET /users/{id}/mailFolders/inbox/messageRules; PATCH …/messageRules/{rule} {isEnabled:false}",
		Params:      []string{"recipients", "rule"},
	},
	EnableForwardRules: {
		Name: EnableForwardRules, Target: "user", Inverse: DisableForwardRules,
		Description: "re-enable the inbox rules a disable_forward_rules disabled",
		Permission:  "MailboxSettings.ReadWrite",
		Calls:       "GET /users/{id}/mailFolders/inbox/messageRules; PATCH …/messageRules/{rule} {isEnabled:true}",
		Params:      []string{"rule_ids"},
	},
	DeleteForwardRules: {
		Name: DeleteForwardRules, Target: "user", Inverse: RestoreForwardRules,
		Description: "delete the inbox rules that forward outside the tenant (scope external) or every forwarding rule (scope all), keeping each rule in the audit record",
		Permission:  "MailboxSettings.ReadWrite", Reads: "Domain.Read.All",
		Calls:  "GET /domains; GET /users/{id}/mailFolders/inbox/messageRules; DELETE …/messageRules/{rule}",
		Params: []string{"scope", "recipients", "rule"},
	},
	RestoreForwardRules: {
		Name: RestoreForwardRules, Target: "user",
		Irreversible: "run delete_forward_rules to remove restored rules again",
		Description:  "recreate inbox rules exactly from the snapshots a delete_forward_rules kept",
		Permission:   "MailboxSettings.ReadWrite",
		Calls:        "GET /users/{id}/mailFolders/inbox/messageRules; POST …/messageRules",
		Params:       []string{"rules"},
	},
	RemoveMailboxForwarding: {
		Name: RemoveMailboxForwarding, Target: "user", Inverse: RestoreMailboxForwarding,
		Description: "clear the mailbox's own forwarding (Set-Mailbox ForwardingSmtpAddress, ForwardingAddress, DeliverToMailboxAndForward), keeping the previous values in the audit record",
		Permission:  ExchangePermission,
		Calls:       "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-Mailbox; Set-Mailbox -ForwardingSmtpAddress $null -ForwardingAddress $null -DeliverToMailboxAndForward $false",
		Params:      []string{"recipients"},
	},
	RestoreMailboxForwarding: {
		Name: RestoreMailboxForwarding, Target: "user",
		Irreversible: "run remove_mailbox_forwarding to remove restored forwarding again",
		Description:  "set the mailbox forwarding a remove_mailbox_forwarding removed back to its recorded values",
		Permission:   ExchangePermission,
		Calls:        "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-Mailbox; Set-Mailbox -ForwardingSmtpAddress -ForwardingAddress -DeliverToMailboxAndForward",
		Params:       []string{"forwarding_smtp_address", "forwarding_address", "deliver_to_mailbox_and_forward"},
	},
	PurgeMail: {
		Name: PurgeMail, Target: "message",
		Irreversible: "purged mail is not restored by Responder (soft: it stays in Deleted Items for the user or an admin to restore; hard: it cannot come back)",
		Description:  "find messages by internet message id, or by sender and/or subject in a received-time window, and delete them (soft: move to Deleted Items; hard: permanentDelete)",
		Permission:   "Mail.ReadWrite", Reads: "User.Read.All (for all_mailboxes)",
		Calls:  "GET /users?$select=id,userPrincipalName,mail (all mailboxes); GET /users/{id}/messages?$filter=…; POST /users/{id}/messages/{msg}/permanentDelete or …/move {destinationId:deleteditems}",
		Params: []string{"sender", "subject", "received_after", "received_before", "mailboxes", "all_mailboxes", "hard"},
	},
	BlockIP: {
		Name: BlockIP, Target: "ip", Inverse: UnblockIP,
		Description: "add the range to Responder's IP named locations blocked by Responder's Conditional Access policy (both created on first use)",
		Permission:  "Policy.ReadWrite.ConditionalAccess", Reads: "Policy.Read.All, User.Read.All, RoleManagement.Read.Directory",
		Calls:  "GET/POST/PATCH /identity/conditionalAccess/namedLocations; GET/POST/PATCH /identity/conditionalAccess/policies",
		Params: []string{"expires"},
	},
	UnblockIP: {
		Name: UnblockIP, Target: "ip", Inverse: BlockIP,
		Description: "remove the range from Responder's blocked IP named locations",
		Permission:  "Policy.ReadWrite.ConditionalAccess", Reads: "Policy.Read.All",
		Calls: "GET/PATCH /identity/conditionalAccess/namedLocations",
	},
	Undo: {
		Name: Undo, Target: "request",
		Irreversible: "an undo is itself undone by undoing the request it issued",
		Description:  "issue the inverse of a finished action as a new request that references it",
		Calls:        "none (publishes the inverse request)",
	},
}

// Lookup returns the catalogue entry for n.
func Lookup(n Name) (Spec, bool) {
	s, ok := catalogue[n]
	return s, ok
}

// Names lists the catalogue, sorted.
func Names() []Name {
	out := make([]Name, 0, len(catalogue))
	for n := range catalogue {
		out = append(out, n)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// CLIName turns disable_user into disable-user.
func (n Name) CLIName() string { return strings.ReplaceAll(string(n), "_", "-") }

// FromCLIName turns disable-user into disable_user.
func FromCLIName(s string) Name { return Name(strings.ReplaceAll(s, "-", "_")) }

// Target is what an action acts on.
type Target struct {
	User      string `json:"user,omitempty"` // UPN or object id
	IP        string `json:"ip,omitempty"`   // address or CIDR
	MessageID string `json:"message_id,omitempty"`
	// RequestID is the request an undo reverses.
	RequestID string `json:"request_id,omitempty"`
}

// Map is the audit form of the target.
func (t Target) Map() map[string]string {
	m := map[string]string{}
	if t.User != "" {
		m["user"] = t.User
	}
	if t.IP != "" {
		m["ip"] = t.IP
	}
	if t.MessageID != "" {
		m["message_id"] = t.MessageID
	}
	if t.RequestID != "" {
		m["request_id"] = t.RequestID
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// Step is a follow-up action of a playbook run, requested only after the step
// before it reached a final outcome, so that steps run in order.
type Step struct {
	Action Name           `json:"action"`
	Target Target         `json:"target"`
	Params map[string]any `json:"params,omitempty"`
	DryRun bool           `json:"dry_run,omitempty"`
	// Approval "required" holds the step for a human decision.
	Approval string `json:"approval,omitempty"`
}

// Request is the action request message on responder.<tenant>.action.<name>.
type Request struct {
	Version     int            `json:"version"`
	ID          string         `json:"id"`
	Action      Name           `json:"action"`
	Target      Target         `json:"target"`
	Params      map[string]any `json:"params,omitempty"`
	RequestedBy audit.Actor    `json:"requested_by"`
	Reason      string         `json:"reason,omitempty"`
	Ticket      string         `json:"ticket,omitempty"`
	EventID     string         `json:"event_id,omitempty"`
	DryRun      bool           `json:"dry_run,omitempty"`
	// OverrideProtected lets an analyst act on a protected identity; the override
	// is audited. A playbook request never overrides.
	OverrideProtected bool `json:"override_protected,omitempty"`
	// Approval "required" holds the request for a human decision (a playbook
	// step marked so); the engine's approval rules may require it anyway.
	Approval    string    `json:"approval,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	// Next holds the remaining steps of a playbook run.
	Next []Step `json:"next,omitempty"`
}

// Playbook is the playbook name when a playbook asked.
func (r *Request) Playbook() string {
	if r.RequestedBy.Kind == "playbook" {
		return r.RequestedBy.Name
	}
	return ""
}

// RejectError says why a request was refused before any call: the message is the
// reason recorded in the audit trail.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return "rejected: " + e.Reason }

func reject(format string, a ...any) error { return &RejectError{Reason: fmt.Sprintf(format, a...)} }

// IsReject reports whether err is a RejectError.
func IsReject(err error) bool {
	var r *RejectError
	return errors.As(err, &r)
}

// Decode parses and validates a request message. Any error is a *RejectError.
func Decode(data []byte) (*Request, error) {
	var r Request
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, reject("malformed request: %v", err)
	}
	if dec.More() {
		return nil, reject("malformed request: trailing data after the JSON object")
	}
	if err := r.Validate(); err != nil {
		return &r, err
	}
	return &r, nil
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// A UPN: local part of RFC 5322 atext and dots, then a domain of labels.
	upnRE = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]{1,113}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$`)
)

// ValidUser reports whether s is a UPN or an Entra object id.
func ValidUser(s string) bool {
	if uuidRE.MatchString(s) {
		return true
	}
	if len(s) > 256 || !upnRE.MatchString(s) {
		return false
	}
	local := s[:strings.LastIndexByte(s, '@')]
	return !strings.HasPrefix(local, ".") && !strings.HasSuffix(local, ".") && !strings.Contains(local, "..")
}

// ValidIP reports whether s is an address or a CIDR prefix.
func ValidIP(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// Validate checks the request against the catalogue before anything acts on it.
func (r *Request) Validate() error {
	if r.Version != Version {
		return reject("unsupported request version %d (this engine speaks %d)", r.Version, Version)
	}
	if !uuidRE.MatchString(r.ID) {
		return reject("request id %q is not a UUID", r.ID)
	}
	spec, ok := Lookup(r.Action)
	if !ok {
		return reject("unknown action %q", r.Action)
	}
	switch r.RequestedBy.Kind {
	case "playbook", "analyst", "engine":
	default:
		return reject("requested_by.kind %q is not playbook, analyst or engine", r.RequestedBy.Kind)
	}
	if r.RequestedBy.Name == "" {
		return reject("requested_by.name is missing")
	}
	if r.RequestedBy.Kind == "analyst" && strings.TrimSpace(r.Reason) == "" {
		return reject("an analyst request needs a reason")
	}
	if err := validateTarget(spec, r.Target); err != nil {
		return err
	}
	if _, err := ParseParams(r.Action, r.Target, r.Params); err != nil {
		return err
	}
	for i, s := range r.Next {
		ns, ok := Lookup(s.Action)
		if !ok {
			return reject("next[%d]: unknown action %q", i, s.Action)
		}
		if err := validateTarget(ns, s.Target); err != nil {
			return reject("next[%d]: %s", i, err.(*RejectError).Reason)
		}
		if _, err := ParseParams(s.Action, s.Target, s.Params); err != nil {
			return reject("next[%d]: %s", i, err.(*RejectError).Reason)
		}
	}
	return nil
}

func validateTarget(spec Spec, t Target) error {
	switch spec.Target {
	case "user":
		if t.User == "" {
			return reject("%s needs target.user (a UPN or object id)", spec.Name)
		}
		if !ValidUser(t.User) {
			return reject("target.user %q is not a UPN or an object id", t.User)
		}
	case "ip":
		if t.IP == "" {
			return reject("%s needs target.ip", spec.Name)
		}
		if !ValidIP(t.IP) {
			return reject("target.ip %q is not an address or CIDR", t.IP)
		}
	case "message":
		// purge_mail: a message id, or sender/subject in params (checked there).
		if t.MessageID != "" && !ValidMessageID(t.MessageID) {
			return reject("target.message_id %q is not an internet message id like <id@host>", t.MessageID)
		}
	case "request":
		if !uuidRE.MatchString(t.RequestID) {
			return reject("%s needs target.request_id (the UUID of a finished request)", spec.Name)
		}
	}
	return nil
}
