package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

type actCmd struct {
	DisableUser             actUserCmd          `cmd:"" name:"disable-user" help:"Block the user's sign-in (accountEnabled=false)."`
	EnableUser              actUserCmd          `cmd:"" name:"enable-user" help:"Allow the user's sign-in again (accountEnabled=true)."`
	RevokeSessions          actUserCmd          `cmd:"" name:"revoke-sessions" help:"Revoke the user's sign-in sessions and refresh tokens."`
	ResetPassword           actUserCmd          `cmd:"" name:"reset-password" help:"Set a generated password (printed here only) and force a change at next sign-in."`
	ConfirmCompromised      actUserCmd          `cmd:"" name:"confirm-compromised" help:"Mark the user compromised in Identity Protection."`
	DismissRisk             actUserCmd          `cmd:"" name:"dismiss-risk" help:"Dismiss the user's risk in Identity Protection."`
	DisableForwardRules     actDisableRulesCmd  `cmd:"" name:"disable-forward-rules" help:"Disable every inbox rule that forwards or redirects mail, internal recipients included (--scope external: only those forwarding outside; reversible)."`
	EnableForwardRules      actEnableRulesCmd   `cmd:"" name:"enable-forward-rules" help:"Re-enable inbox rules a disable-forward-rules disabled (undo does this for you)."`
	DeleteForwardRules      actDeleteRulesCmd   `cmd:"" name:"delete-forward-rules" help:"Delete the inbox rules that forward outside the tenant (each rule is kept in the audit record)."`
	RemoveMailboxForwarding actUserCmd          `cmd:"" name:"remove-mailbox-forwarding" help:"Clear the mailbox's own forwarding (Set-Mailbox, through the Exchange admin API); undo restores it."`
	PurgeMail               actPurgeCmd         `cmd:"" name:"purge-mail" help:"Find messages and delete them (soft: Deleted Items; --hard: permanentDelete, cannot be undone)."`
	BlockIP                 actIPCmd            `cmd:"" name:"block-ip" help:"Block sign-ins from an address or range with Responder's Conditional Access policy."`
	UnblockIP               actIPCmd            `cmd:"" name:"unblock-ip" help:"Remove an address or range from Responder's blocked locations."`
	BlockSender             actSenderCmd        `cmd:"" name:"block-sender" help:"Block mail from an address or a whole domain in the Tenant Allow/Block List (Exchange admin API); undo removes the entry."`
	IsolateDevice           actIsolateCmd       `cmd:"" name:"isolate-device" help:"Isolate a device from the network in Defender for Endpoint (waits for the machine action); undo releases it."`
	ReleaseDevice           actReleaseCmd       `cmd:"" name:"release-device" help:"Release a device from isolation in Defender for Endpoint."`
	BlockFile               actBlockFileCmd     `cmd:"" name:"block-file" help:"Block a file hash on devices (Defender indicator, BlockAndRemediate); undo deletes the indicator."`
	BlockURL                actBlockURLCmd      `cmd:"" name:"block-url" help:"Block a URL on devices (Defender indicator); undo deletes the indicator."`
	BlockDomain             actBlockDomainCmd   `cmd:"" name:"block-domain" help:"Block a domain on devices (Defender indicator); undo deletes the indicator."`
	BlockDeviceIP           actBlockDeviceIPCmd `cmd:"" name:"block-device-ip" help:"Block one IP address on devices (Defender indicator; no CIDR); undo deletes the indicator."`
	Undo                    actUndoCmd          `cmd:"" name:"undo" help:"Issue the inverse of a finished request (irreversible actions say so)."`
	// Generic holds a generated verb for every other catalogue action
	// (act_generic.go).
	Generic kong.Plugins `embed:""`
}

// actCommon are the flags every action request has.
type actCommon struct {
	clientFlags
	Reason            string        `help:"Why (kept in the audit trail)." required:""`
	Ticket            string        `help:"Ticket or incident id."`
	DryRun            bool          `help:"Record what would be done; change nothing."`
	Wait              time.Duration `help:"How long to wait for the outcome once the request is queued (0: do not wait). Queuing itself rides out a cluster's failover for up to 20s." default:"60s"`
	JSON              bool          `name:"json" help:"Print one JSON object."`
	Analyst           string        `help:"Your name in the analysts file (must match the key; default: the local administrator)." env:"RESPONDER_ANALYST"`
	Key               string        `help:"Key file (nkey seed) to sign with (default: the local administrator key in the data directory)." env:"RESPONDER_KEY" type:"path"`
	OverrideProtected bool          `help:"Act on a protected identity (audited)."`
}

type actUserCmd struct {
	actCommon
	User string `help:"UPN or object id." required:""`
}

type actEnableRulesCmd struct {
	actCommon
	User   string   `help:"UPN or object id." required:""`
	RuleID []string `name:"rule-id" help:"Inbox rule id; repeat for several." required:""`
}

func (c *actEnableRulesCmd) Run(e *env) error {
	ids := make([]any, len(c.RuleID))
	for i, id := range c.RuleID {
		ids[i] = id
	}
	return c.send(e, actions.EnableForwardRules, actions.Target{User: c.User}, map[string]any{"rule_ids": ids})
}

type actDeleteRulesCmd struct {
	actCommon
	User  string `help:"UPN or object id." required:""`
	Scope string `help:"external: rules forwarding outside the verified domains; all: every forwarding rule." enum:"external,all" default:"external"`
}

type actDisableRulesCmd struct {
	actCommon
	User  string `help:"UPN or object id." required:""`
	Scope string `help:"all: every forwarding rule, internal recipients included; external: rules forwarding outside the verified domains." enum:"external,all" default:"all"`
}

func (c *actDisableRulesCmd) Run(e *env) error {
	return c.send(e, actions.DisableForwardRules, actions.Target{User: c.User}, map[string]any{"scope": c.Scope})
}

func (c *actDeleteRulesCmd) Run(e *env) error {
	return c.send(e, actions.DeleteForwardRules, actions.Target{User: c.User}, map[string]any{"scope": c.Scope})
}

type actPurgeCmd struct {
	actCommon
	MessageID      string        `name:"message-id" help:"Internet message id, e.g. '<id@host>'."`
	Sender         string        `help:"Sender address (with a time window)."`
	Subject        string        `help:"Exact subject (with a time window)."`
	Since          time.Duration `help:"Received within this long before now (e.g. 48h)."`
	ReceivedAfter  string        `name:"received-after" help:"Received at or after (RFC 3339)."`
	ReceivedBefore string        `name:"received-before" help:"Received before (RFC 3339)."`
	Mailbox        []string      `help:"Mailbox (UPN or object id); repeat for several."`
	AllMailboxes   bool          `name:"all-mailboxes" help:"Search every mailbox of the tenant."`
	Hard           bool          `help:"permanentDelete instead of moving to Deleted Items: cannot be undone."`
}

func (c *actPurgeCmd) Run(e *env) error {
	p := map[string]any{}
	if c.Sender != "" {
		p["sender"] = c.Sender
	}
	if c.Subject != "" {
		p["subject"] = c.Subject
	}
	after := c.ReceivedAfter
	if c.Since > 0 {
		after = time.Now().Add(-c.Since).UTC().Format(time.RFC3339)
	}
	if after != "" {
		p["received_after"] = after
	}
	if c.ReceivedBefore != "" {
		p["received_before"] = c.ReceivedBefore
	}
	if len(c.Mailbox) > 0 {
		mb := make([]any, len(c.Mailbox))
		for i, m := range c.Mailbox {
			mb[i] = m
		}
		p["mailboxes"] = mb
	}
	if c.AllMailboxes {
		p["all_mailboxes"] = true
	}
	if c.Hard {
		p["hard"] = true
		if !c.DryRun {
			fmt.Fprintln(e.stderr, "WARNING: --hard purges with permanentDelete: the messages cannot be recovered and Responder cannot undo it.")
		}
	}
	return c.send(e, actions.PurgeMail, actions.Target{MessageID: c.MessageID}, p)
}

type actIPCmd struct {
	actCommon
	IP      string `name:"ip" help:"Address or CIDR range." required:""`
	Expires string `help:"block-ip only: unblock automatically after this long (e.g. 24h, 7d)."`
}

func (c *actIPCmd) Run(e *env, k *kong.Context) error {
	path := strings.Fields(k.Command())
	action := actions.FromCLIName(path[len(path)-1])
	var p map[string]any
	if c.Expires != "" {
		if action != actions.BlockIP {
			return errors.New("--expires applies to block-ip only")
		}
		p = map[string]any{"expires": c.Expires}
	}
	return c.send(e, action, actions.Target{IP: c.IP}, p)
}

type actSenderCmd struct {
	actCommon
	Sender  string `help:"E-mail address or domain (never one of the tenant's verified domains or Microsoft's)." required:""`
	Expires string `help:"How long the block lasts: a duration up to 90d (default 30d, the Defender portal's), or never."`
}

func (c *actSenderCmd) Run(e *env) error {
	var p map[string]any
	if c.Expires != "" {
		p = map[string]any{"expires": c.Expires}
	}
	return c.send(e, actions.BlockSender, actions.Target{Sender: c.Sender}, p)
}

type actUndoCmd struct {
	actCommon
	RequestID string `arg:"" name:"request-id" help:"The finished request to reverse."`
}

func (c *actUndoCmd) Run(e *env) error {
	return c.send(e, actions.Undo, actions.Target{RequestID: c.RequestID}, nil)
}

// outcomeError gives act a non-zero exit status when the action did not succeed.
type outcomeError struct{ o actions.Outcome }

func (e *outcomeError) Error() string {
	return fmt.Sprintf("%s %s", e.o.Action, e.o.Outcome)
}
func (e *outcomeError) ExitCode() int { return 3 }

func (c *actUserCmd) Run(e *env, k *kong.Context) error {
	path := strings.Fields(k.Command())
	action := actions.FromCLIName(path[len(path)-1])
	return c.send(e, action, actions.Target{User: c.User}, nil)
}

// send publishes one request and waits for its outcome. A secret in the outcome
// (reset_password's password) is printed to stdout only, never logged.
func (c *actCommon) send(e *env, action actions.Name, target actions.Target, params map[string]any) error {
	url, tenant, err := c.resolve()
	if err != nil {
		return err
	}
	kp, name, err := signerFlags{Key: c.Key, Analyst: c.Analyst}.keyPair(c.DataDir)
	if err != nil {
		return err
	}
	req := &actions.Request{
		Version: actions.Version, ID: uuid.NewString(), Action: action, Target: target, Params: params,
		RequestedBy: audit.Actor{Kind: "analyst", Name: name},
		Reason:      c.Reason, Ticket: c.Ticket, DryRun: c.DryRun, OverrideProtected: c.OverrideProtected,
		RequestedAt: time.Now().UTC(), Tenant: tenant,
	}
	// A generated password comes back sealed to a key of this process only.
	var seal nkeys.KeyPair
	if action == actions.ResetPassword {
		if seal, err = nkeys.CreateCurveKeys(); err != nil {
			return err
		}
		if req.SealTo, err = seal.PublicKey(); err != nil {
			return err
		}
	}
	if err := req.Validate(); err != nil {
		return err
	}
	nc, err := connectNATS(url, "responder-act", c.natsAuthFlags, kp)
	if err != nil {
		return err
	}
	defer nc.Close()
	// The outcome comes on the requester's own result subject, which only
	// the holder of this key (and the engine) may read.
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	sub, err := nc.SubscribeSync(bus.ResultSubjectFor(tenant, pub, req.ID))
	if err != nil {
		return fmt.Errorf("subscribe for the outcome: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// Queuing is bounded by bus.FailoverWindow, not by --wait: a request
	// is either stored once or refused, whatever the wait.
	if err := analyst.Publish(e.ctx, js, tenant, req, kp); err != nil {
		return err
	}
	if c.Wait <= 0 {
		if c.JSON {
			return json.NewEncoder(e.stdout).Encode(map[string]string{"request_id": req.ID, "action": string(action), "status": "queued"})
		}
		fmt.Fprintf(e.stderr, "requested %s on %s (request %s): queued; see `responder audit list --request %s`\n", action, describe(target), req.ID, req.ID)
		return nil
	}
	if !c.JSON {
		fmt.Fprintf(e.stderr, "requested %s on %s (request %s); waiting up to %s\n", action, describe(target), req.ID, c.Wait)
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Wait)
	defer cancel()
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no outcome within %s: request %s is queued and will still run; see `responder audit list --request %s`", c.Wait, req.ID, req.ID)
		}
		return err
	}
	var o actions.Outcome
	if err := json.Unmarshal(msg.Data, &o); err != nil {
		return fmt.Errorf("undecodable outcome: %w", err)
	}
	var password string
	if len(o.Sealed) > 0 && seal != nil {
		if password, err = actions.OpenSecret(o, seal); err != nil {
			return fmt.Errorf("the sealed password could not be opened: %w", err)
		}
	}
	o.Sealed, o.SealedBy = nil, ""
	if c.JSON {
		b, _ := json.Marshal(struct {
			actions.Outcome
			Password string `json:"password,omitempty"`
		}{o, password})
		fmt.Fprintln(e.stdout, string(b))
	} else {
		line := fmt.Sprintf("%s %s: %s", o.Action, describe(target), o.Outcome)
		if o.Detail != "" {
			line += " - " + o.Detail
		}
		if o.ErrorCode != "" {
			line += " [" + o.ErrorCode + "]"
		}
		fmt.Fprintf(e.stdout, "%s\n  request %s, audit record %s\n", line, o.RequestID, o.AuditID)
		if password != "" {
			fmt.Fprintf(e.stdout, "  new password (shown once, not stored anywhere): %s\n", password)
		}
	}
	switch o.Outcome {
	case audit.Succeeded, audit.DryRun, audit.PendingApproval:
		return nil
	}
	return &outcomeError{o: o}
}

func describe(t actions.Target) string {
	switch {
	case t.User != "":
		return t.User
	case t.IP != "":
		return t.IP
	case t.RequestID != "":
		return "request " + t.RequestID
	case t.MessageID == "":
		return "the matching messages"
	}
	return t.MessageID
}
