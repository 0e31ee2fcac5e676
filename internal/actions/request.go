package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/responder-sec/responder/internal/audit"
)

// Version of the action request message.
const Version = 1

// CLIName turns disable_user into disable-user.
func (n Name) CLIName() string { return strings.ReplaceAll(string(n), "_", "-") }

// FromCLIName turns disable-user into disable_user.
func FromCLIName(s string) Name { return Name(strings.ReplaceAll(s, "-", "_")) }

// Target is what an action acts on.
type Target struct {
	User      string `json:"user,omitempty"` // UPN or object id
	IP        string `json:"ip,omitempty"`   // address or CIDR
	MessageID string `json:"message_id,omitempty"`
	// Sender is an e-mail address or a whole domain (block_sender).
	Sender string `json:"sender,omitempty"`
	// Device is a Defender machine id, an Entra device id or a computer DNS
	// name (isolate_device, release_device).
	Device string `json:"device,omitempty"`
	// File is a SHA-256 or SHA-1 hash (block_file); URL and Domain are what
	// block_url and block_domain block.
	File   string `json:"file,omitempty"`
	URL    string `json:"url,omitempty"`
	Domain string `json:"domain,omitempty"`
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
	if t.Sender != "" {
		m["sender"] = t.Sender
	}
	for k, v := range map[string]string{"device": t.Device, "file": t.File, "url": t.URL, "domain": t.Domain} {
		if v != "" {
			m[k] = v
		}
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
	// SealTo is an X25519 public key (an nkeys curve key, "X…") of the
	// requester's: a secret the action generates (reset_password's password)
	// is sealed to it, so nobody else on the bus can read it. An analyst's
	// reset_password needs one; responder act makes a fresh key per request.
	SealTo string `json:"seal_to,omitempty"`
	// Tenant names the tenant the request is for, inside the signed body, so
	// a request signed for one tenant is refused by another's engine even
	// when one cluster carries both. responder act and the engine always set
	// it; the worker refuses a request that names another tenant.
	Tenant string `json:"tenant,omitempty"`
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
	if isUUID(s) {
		return true
	}
	if len(s) > 256 || !validUPN(s) {
		return false
	}
	local := s[:strings.LastIndexByte(s, '@')]
	return !strings.HasPrefix(local, ".") && !strings.HasSuffix(local, ".") && !strings.Contains(local, "..")
}

// ValidMailboxIdentity accepts a value Get-Mailbox -Identity can resolve: a
// name, alias, display name, path-form (canonical) name, legacyExchangeDN,
// smtp: address, GUID or UPN
// (https://learn.microsoft.com/powershell/module/exchange/get-mailbox#-identity).
// It refuses what would make it a pattern or a different command: wildcards,
// control characters, a leading '-', more than 256 bytes.
func ValidMailboxIdentity(s string) bool {
	if s == "" || len(s) > 256 || s[0] == '-' || strings.ContainsAny(s, "*?") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
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
	if r.SealTo != "" && !nkeys.IsValidPublicCurveKey(r.SealTo) {
		return reject("seal_to %q is not an X25519 public key (an nkeys curve key)", short(r.SealTo))
	}
	if r.Action == ResetPassword && r.RequestedBy.Kind == "analyst" && r.SealTo == "" {
		return reject("an analyst's reset_password needs seal_to: the X25519 public key the new password is sealed to")
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
	if handled, err := validateDefenderTarget(spec, t); handled {
		return err
	}
	switch spec.Target {
	case "user":
		if t.User == "" {
			return reject("%s needs target.user (a UPN or object id)", spec.Name)
		}
		if !ValidUser(t.User) && !(spec.MailboxTarget && ValidMailboxIdentity(t.User)) {
			if spec.MailboxTarget {
				return reject("target.user %q is not a UPN, an object id or a mailbox identity", short(t.User))
			}
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
	case "sender":
		if _, _, err := ParseSender(t.Sender); err != nil {
			return err
		}
	case "request":
		if !uuidRE.MatchString(t.RequestID) {
			return reject("%s needs target.request_id (the UUID of a finished request)", spec.Name)
		}
	}
	return nil
}

// short bounds a value quoted in a rejection.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
