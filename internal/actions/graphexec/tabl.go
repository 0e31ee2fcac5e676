package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

// Sender blocks live in the Tenant Allow/Block List, which Graph does not
// expose for writing (the beta tenantAllowBlockList is read-only); the
// Exchange Online admin API runs its cmdlets:
//
//	Get-TenantAllowBlockListItems -ListType Sender -Block -Entry X
//	New-TenantAllowBlockListItems -ListType Sender -Block -Entries X (-ExpirationDate D | -NoExpiration) -Notes N
//	Remove-TenantAllowBlockListItems -ListType Sender -Ids ID
//
// (https://learn.microsoft.com/defender-office-365/tenant-allow-block-list-email-spoof-configure).
// The inverse removes only the entry Responder created, by its identity: an
// entry that was already there is reported and left alone.

// tablEntry is the part of a Tenant Allow/Block List entry Responder reads.
type tablEntry struct {
	Identity       string  `json:"Identity"`
	Value          string  `json:"Value"`
	Action         string  `json:"Action"`
	ListType       string  `json:"ListType"`
	ExpirationDate *string `json:"ExpirationDate"`
	Notes          string  `json:"Notes"`
}

func (x tablEntry) expiry() string {
	if x.ExpirationDate == nil || *x.ExpirationDate == "" {
		return "never expires"
	}
	return "expires " + *x.ExpirationDate
}

// addTABL registers block_sender and unblock_sender.
func (e *Executor) addTABL(h actions.Handlers) {
	h[actions.BlockSender] = actions.Handler{
		Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.blockSender(ctx, req, p, false)
		},
		Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.blockSender(ctx, req, p, true)
		},
	}
	h[actions.UnblockSender] = actions.Handler{
		Execute: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.unblockSender(ctx, p, false)
		},
		Plan: func(ctx context.Context, req *actions.Request, p actions.Params) (actions.Result, error) {
			return e.unblockSender(ctx, p, true)
		},
	}
}

// senderBlocks lists the block entries for exactly value.
func (e *Executor) senderBlocks(ctx context.Context, c *calls, value, perm string) ([]tablEntry, error) {
	vals, _, err := e.exo.invoke(ctx, c, "Get-TenantAllowBlockListItems",
		map[string]any{"ListType": "Sender", "Block": true, "Entry": value}, "", "", perm)
	if err != nil {
		return nil, err
	}
	var out []tablEntry
	for _, v := range vals {
		var x tablEntry
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, &actions.Error{Class: actions.Transient, Code: "InvalidResponse", Message: "decode Get-TenantAllowBlockListItems: " + err.Error()}
		}
		if strings.EqualFold(x.Value, value) {
			out = append(out, x)
		}
	}
	return out, nil
}

func tablJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// tablNotes is what the Defender portal shows beside the entry: where it came
// from (no secret is ever in a request's reason or id).
func tablNotes(req *actions.Request) string {
	n := "Responder request " + req.ID
	if who := req.RequestedBy.Kind + " " + req.RequestedBy.Name; strings.TrimSpace(who) != "" {
		n += " by " + who
	}
	if r := strings.TrimSpace(req.Reason); r != "" {
		n += ": " + r
	}
	if len(n) > 500 {
		n = n[:500] + "…"
	}
	return n
}

func senderKind(p actions.Params) string {
	if p.SenderIsDomain {
		return "domain"
	}
	return "sender"
}

// blockSender adds a block entry for the sender unless one exists already.
func (e *Executor) blockSender(ctx context.Context, req *actions.Request, p actions.Params, plan bool) (actions.Result, error) {
	if e.exo == nil {
		return actions.Result{}, errNoExchange
	}
	perm := permission(actions.BlockSender)
	c := newCalls()
	have, err := e.senderBlocks(ctx, c, p.Sender, perm)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	if len(have) > 0 {
		return actions.Result{
			Detail: fmt.Sprintf("%s %s is already blocked in the Tenant Allow/Block List by entry %s (%s); Responder did not create it and will not remove it",
				senderKind(p), p.Sender, have[0].Identity, have[0].expiry()),
			Before: tablJSON(have), GraphRequestIDs: c.list(), AlreadyDone: true,
		}, nil
	}
	params := map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{p.Sender}, "Notes": tablNotes(req)}
	until := "never expires"
	if p.NoExpiration {
		params["NoExpiration"] = true
	} else {
		exp := time.Now().Add(p.Expires).UTC().Truncate(time.Second)
		params["ExpirationDate"] = exp.Format(time.RFC3339)
		until = "until " + exp.Format(time.RFC3339)
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("block %s %s in the Tenant Allow/Block List (%s)", senderKind(p), p.Sender, until),
			Before: tablJSON([]tablEntry{}), GraphRequestIDs: c.list()}, nil
	}
	vals, warnings, err := e.exo.invoke(ctx, c, "New-TenantAllowBlockListItems", params, "", "", perm)
	if err != nil {
		return actions.Result{Before: tablJSON([]tablEntry{}), GraphRequestIDs: c.list()}, err
	}
	var made tablEntry
	for _, v := range vals {
		var x tablEntry
		if json.Unmarshal(v, &x) == nil && strings.EqualFold(x.Value, p.Sender) {
			made = x
		}
	}
	if made.Identity == "" {
		return actions.Result{GraphRequestIDs: c.list()}, &actions.Error{Class: actions.Transient, Code: "InvalidResponse",
			Message: "New-TenantAllowBlockListItems answered without the entry it created for " + p.Sender}
	}
	detail := fmt.Sprintf("blocked %s %s in the Tenant Allow/Block List: entry %s (%s); mail from it is quarantined as high confidence phishing",
		senderKind(p), p.Sender, made.Identity, made.expiry())
	if len(warnings) > 0 {
		detail += "; Exchange warned: " + strings.Join(warnings, " ")
	}
	return actions.Result{
		Detail: detail, Before: tablJSON([]tablEntry{}), After: tablJSON(made), GraphRequestIDs: c.list(),
		Undo: &actions.Step{Action: actions.UnblockSender, Target: actions.Target{Sender: p.Sender}, Params: map[string]any{"entry_id": made.Identity}},
	}, nil
}

// unblockSender removes the entry block_sender created, and only that one.
func (e *Executor) unblockSender(ctx context.Context, p actions.Params, plan bool) (actions.Result, error) {
	if e.exo == nil {
		return actions.Result{}, errNoExchange
	}
	perm := permission(actions.UnblockSender)
	c := newCalls()
	have, err := e.senderBlocks(ctx, c, p.Sender, perm)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	var mine *tablEntry
	for i := range have {
		if have[i].Identity == p.EntryID {
			mine = &have[i]
		}
	}
	if mine == nil {
		return actions.Result{Detail: fmt.Sprintf("entry %s for %s is no longer in the Tenant Allow/Block List (expired or removed): nothing to remove", p.EntryID, p.Sender),
			Before: tablJSON(have), GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("remove Tenant Allow/Block List entry %s blocking %s", mine.Identity, p.Sender),
			Before: tablJSON(mine), GraphRequestIDs: c.list()}, nil
	}
	if _, _, err := e.exo.invoke(ctx, c, "Remove-TenantAllowBlockListItems",
		map[string]any{"ListType": "Sender", "Ids": []string{mine.Identity}}, "", "", perm); err != nil {
		return actions.Result{Before: tablJSON(mine), GraphRequestIDs: c.list()}, err
	}
	return actions.Result{Detail: fmt.Sprintf("removed Tenant Allow/Block List entry %s: %s %s is no longer blocked", mine.Identity, senderKind(p), p.Sender),
		Before: tablJSON(mine), After: tablJSON([]tablEntry{}), GraphRequestIDs: c.list()}, nil
}

// VerifiedDomains is the tenant's verified domains (the configured override,
// or Graph's, cached): the domain guard's source.
func (e *Executor) VerifiedDomains(ctx context.Context) ([]string, error) {
	return e.verifiedDomains(ctx, newCalls())
}
