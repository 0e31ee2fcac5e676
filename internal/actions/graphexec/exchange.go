package graphexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/responder-sec/responder/internal/actions"
)

// Microsoft Graph does not expose a mailbox's own forwarding (Set-Mailbox
// -ForwardingSmtpAddress / -ForwardingAddress / -DeliverToMailboxAndForward).
// The Exchange Online admin API does: the REST endpoint the
// ExchangeOnlineManagement v3 module sends every cmdlet to,
//
//	POST {base}/{tenant}/InvokeCommand
//	{"CmdletInput":{"CmdletName":"Set-Mailbox","Parameters":{...}}}
//
// with a token for https://outlook.office365.com (application permission
// Exchange.ManageAsApp; the service principal also needs an Exchange role).
// Success is 200 {"value":[…], "@adminapi.warnings":[…]}; a cmdlet failure is an
// OData error whose details carry "ErrorId|ExceptionType|text":
//
//	{"error":{"code":"NotFound","message":"Error executing cmdlet","details":[{"code":"Client","target":"",
//	 "message":"Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The operation couldn't be performed because object 'x' couldn't be found on '…'."}],
//	 "innererror":{"message":"Error executing cmdlet","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}}}

// InvokeCommand is undocumented: Microsoft may retire it. Every call goes
// through exchange.invoke, the one adapter; a 404 or 410 that is not a
// cmdlet's own failure (a cmdlet error carries "ErrorId|ExceptionType|text"
// details, e.g. Get-Mailbox's ManagementObjectNotFoundException) means the
// endpoint is gone and is reported as CodeInvokeCommandGone, naming the
// cmdlet. Microsoft's documented replacement is the Exchange Online Admin API
// (https://learn.microsoft.com/exchange/reference/admin-api-overview,
// POST {host}/adminapi/v2.0/{tenant}/Mailbox and the like), which so far
// serves a few cmdlets and parameters, not mailbox forwarding
// (https://learn.microsoft.com/exchange/reference/admin-api-endpoints-reference):
// the fallback to watch.

// CodeInvokeCommandGone is the error code of a call the InvokeCommand
// endpoint answered with 404 or 410 outside any cmdlet.
const CodeInvokeCommandGone = "ExchangeInvokeCommandGone"

// InvokeCommandFallbackDoc names where the operator reads about the fallback.
const InvokeCommandFallbackDoc = `docs/action-requests.md, "Mailbox forwarding"`

// DefaultExchangeURL is the public cloud's Exchange Online admin API.
const DefaultExchangeURL = "https://outlook.office365.com/adminapi/beta"

// appAnchor is the anchor mailbox the ExchangeOnlineManagement module routes
// app-only calls through when no user mailbox anchors them.
const appAnchor = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"

// maxExchangeBody bounds a response read from the admin API.
const maxExchangeBody = 4 << 20

// exchange calls the Exchange Online admin API.
type exchange struct {
	hc     *http.Client // adds the bearer token
	base   string
	tenant string
}

func newExchange(cfg Config) *exchange {
	if cfg.Exchange == nil || cfg.TenantID == "" {
		return nil
	}
	base := strings.TrimRight(cfg.ExchangeURL, "/")
	if base == "" {
		base = DefaultExchangeURL
	}
	return &exchange{hc: cfg.Exchange, base: base, tenant: cfg.TenantID}
}

// exoError is the admin API's error body.
type exoError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"details"`
		InnerError struct {
			Message           string `json:"message"`
			Type              string `json:"type"`
			InternalException struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"internalException"`
		} `json:"innererror"`
	} `json:"error"`
}

// classifyExchange turns an admin API failure into an *actions.Error. The code
// is the cmdlet's exception type (ManagementObjectNotFoundException…) when the
// body names one, else the OData code; the message keeps Exchange's error id.
func classifyExchange(status int, h http.Header, body []byte, perm string) *actions.Error {
	e := &actions.Error{Status: status, RequestID: h.Get("request-id"), ClientRequestID: h.Get("client-request-id")}
	var b exoError
	if json.Unmarshal(body, &b) == nil {
		e.Code, e.Message = b.Error.Code, b.Error.Message
		for _, d := range b.Error.Details {
			if d.Message == "" {
				continue
			}
			// "Ex6F9304|Microsoft.Exchange.…ManagementObjectNotFoundException|text"
			parts := strings.SplitN(d.Message, "|", 3)
			if len(parts) == 3 {
				e.Code = parts[1][strings.LastIndexByte(parts[1], '.')+1:]
				e.Message = parts[0] + ": " + parts[2]
			} else {
				e.Message = d.Message
			}
			break
		}
		if len(b.Error.Details) == 0 {
			if ie := b.Error.InnerError.InternalException; ie.Message != "" {
				e.Message = ie.Message
				if ie.Type != "" {
					e.Code = ie.Type[strings.LastIndexByte(ie.Type, '.')+1:]
				}
			}
		}
	}
	if e.Message == "" && status == http.StatusUnauthorized {
		// Exchange answers a bad token with an empty body and a challenge.
		if c := h.Get("WWW-Authenticate"); c != "" {
			e.Message = "token refused: " + firstLine(c)
		}
	}
	if len(e.Message) > 1000 {
		e.Message = e.Message[:1000] + "…"
	}
	if ra := h.Get("Retry-After"); ra != "" {
		if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
	classifyStatus(e, perm)
	return e
}

// invoke runs one cmdlet and returns its result objects. c collects the
// request ids; anchor is the mailbox the call is about (a UPN routes it there).
func (x *exchange) invoke(ctx context.Context, c *calls, cmdlet string, params map[string]any, anchor, sel, perm string) ([]json.RawMessage, []string, error) {
	body, err := json.Marshal(map[string]any{"CmdletInput": map[string]any{"CmdletName": cmdlet, "Parameters": params}})
	if err != nil {
		return nil, nil, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: "encode cmdlet input: " + err.Error()}
	}
	u := x.base + "/" + url.PathEscape(x.tenant) + "/InvokeCommand"
	if sel != "" {
		u += "?" + query("$select", sel)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-CmdletName", cmdlet)
	req.Header.Set("X-ResponseFormat", "json")
	req.Header.Set("client-request-id", uuid.NewString())
	if strings.Contains(anchor, "@") {
		req.Header.Set("X-AnchorMailbox", "UPN:"+anchor)
	} else {
		req.Header.Set("X-AnchorMailbox", "UPN:"+appAnchor+x.tenant)
	}
	res, err := x.hc.Do(req)
	if err != nil {
		return nil, nil, Classify(fmt.Errorf("exchange %s: %w", cmdlet, err), perm)
	}
	defer res.Body.Close()
	c.add(res.Header.Get("request-id"))
	b, err := io.ReadAll(io.LimitReader(res.Body, maxExchangeBody))
	if err != nil {
		return nil, nil, Classify(fmt.Errorf("exchange %s: read response: %w", cmdlet, err), perm)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		if endpointGone(res.StatusCode, b) {
			return nil, nil, &actions.Error{Class: actions.Permanent, Status: res.StatusCode, Code: CodeInvokeCommandGone,
				RequestID: res.Header.Get("request-id"), ClientRequestID: res.Header.Get("client-request-id"),
				Message: fmt.Sprintf("Exchange admin API InvokeCommand answered %d for %s (%s): the endpoint may have been retired; see %s for Microsoft's documented v2.0 admin API, the fallback to watch",
					res.StatusCode, cmdlet, x.base, InvokeCommandFallbackDoc)}
		}
		return nil, nil, classifyExchange(res.StatusCode, res.Header, b, perm)
	}
	var out struct {
		Value    []json.RawMessage `json:"value"`
		Warnings []string          `json:"@adminapi.warnings"`
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, nil, &actions.Error{Class: actions.Transient, Status: res.StatusCode, Code: "InvalidResponse",
				Message: "the Exchange admin API answered " + cmdlet + " with a body that is not JSON", RequestID: res.Header.Get("request-id")}
		}
	}
	return out.Value, out.Warnings, nil
}

// endpointGone says whether a 404 or 410 from InvokeCommand is the endpoint's
// (gone, moved) rather than a cmdlet's failure: 410 always; 404 when the body
// names no cmdlet exception.
func endpointGone(status int, body []byte) bool {
	switch status {
	case http.StatusGone:
		return true
	case http.StatusNotFound:
	default:
		return false
	}
	var b exoError
	if json.Unmarshal(body, &b) != nil {
		return true
	}
	for _, d := range b.Error.Details {
		if len(strings.SplitN(d.Message, "|", 3)) == 3 {
			return false
		}
	}
	return b.Error.InnerError.InternalException.Type == ""
}

// InvokeCommandProbe returns a check that the InvokeCommand endpoint still
// answers, for doctor: a harmless read (Get-Mailbox -ResultSize 1, the
// Identity only) through the same adapter the actions use. hc adds the
// Exchange bearer token; baseURL "" is DefaultExchangeURL. The check's error
// is an *actions.Error: CodeInvokeCommandGone when the endpoint is gone, the
// admin API's own code otherwise (403 when the app lacks
// Exchange.ManageAsApp or an Exchange role).
func InvokeCommandProbe(hc *http.Client, baseURL, tenantID string) func(context.Context) error {
	x := newExchange(Config{Exchange: hc, ExchangeURL: baseURL, TenantID: tenantID})
	return func(ctx context.Context) error {
		if x == nil {
			return errNoExchange
		}
		_, _, err := x.invoke(ctx, newCalls(), "Get-Mailbox", map[string]any{"ResultSize": 1}, "", "Identity", actions.ExchangePermission)
		return err
	}
}

// mailbox is the part of Get-Mailbox the forwarding actions read.
type mailbox struct {
	Identity                   string `json:"Identity"`
	UserPrincipalName          string `json:"UserPrincipalName"`
	PrimarySMTPAddress         string `json:"PrimarySmtpAddress"`
	ExternalDirectoryObjectID  string `json:"ExternalDirectoryObjectId"`
	ForwardingSMTPAddress      string `json:"ForwardingSmtpAddress"`
	ForwardingAddress          string `json:"ForwardingAddress"`
	DeliverToMailboxAndForward bool   `json:"DeliverToMailboxAndForward"`
}

func (m *mailbox) forwarding() actions.MailboxForwarding {
	return actions.MailboxForwarding{SMTPAddress: m.ForwardingSMTPAddress, Address: m.ForwardingAddress, DeliverAndForward: m.DeliverToMailboxAndForward}
}

const mailboxSelect = "Identity,UserPrincipalName,PrimarySmtpAddress,ExternalDirectoryObjectId,ForwardingSmtpAddress,ForwardingAddress,DeliverToMailboxAndForward"

var errNoExchange = &actions.Error{Class: actions.Permanent, Code: "ExchangeNotConfigured",
	Message: "the Exchange Online admin API is not configured for this executor (graphexec.Config.Exchange and TenantID)"}

func (e *Executor) getMailbox(ctx context.Context, c *calls, user, perm string) (*mailbox, error) {
	if e.exo == nil {
		return nil, errNoExchange
	}
	vals, _, err := e.exo.invoke(ctx, c, "Get-Mailbox", map[string]any{"Identity": user}, user, mailboxSelect, perm)
	if err != nil {
		return nil, err
	}
	if len(vals) != 1 {
		return nil, &actions.Error{Class: actions.Permanent, Code: "AmbiguousIdentity",
			Message: fmt.Sprintf("Get-Mailbox -Identity %q returned %d mailboxes, want exactly 1", user, len(vals))}
	}
	var m mailbox
	if err := json.Unmarshal(vals[0], &m); err != nil {
		return nil, &actions.Error{Class: actions.Transient, Code: "InvalidResponse", Message: "decode Get-Mailbox: " + err.Error()}
	}
	return &m, nil
}

// setForwarding runs Set-Mailbox with f (nil values clear the addresses).
func (e *Executor) setForwarding(ctx context.Context, c *calls, user string, f actions.MailboxForwarding, perm string) ([]string, error) {
	nz := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	params := map[string]any{
		"Identity":                   user,
		"ForwardingSmtpAddress":      nz(f.SMTPAddress),
		"ForwardingAddress":          nz(f.Address),
		"DeliverToMailboxAndForward": f.DeliverAndForward,
	}
	_, warnings, err := e.exo.invoke(ctx, c, "Set-Mailbox", params, user, "", perm)
	return warnings, err
}

// who names the mailbox for a detail: the target, with its UPN when the
// target is an object id.
func who(target string, m *mailbox) string {
	if m.UserPrincipalName != "" && !strings.EqualFold(m.UserPrincipalName, target) {
		return target + " (" + m.UserPrincipalName + ")"
	}
	return target
}

func describeForwarding(f actions.MailboxForwarding) string {
	var parts []string
	if f.SMTPAddress != "" {
		parts = append(parts, "ForwardingSmtpAddress "+f.SMTPAddress)
	}
	if f.Address != "" {
		parts = append(parts, "ForwardingAddress "+f.Address)
	}
	if len(parts) == 0 {
		return "no forwarding"
	}
	keep := "without keeping a copy"
	if f.DeliverAndForward {
		keep = "keeping a copy in the mailbox"
	}
	return strings.Join(parts, " and ") + " (" + keep + ")"
}

func forwardingJSON(m *mailbox, f actions.MailboxForwarding) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"mailbox": m.Identity, "userPrincipalName": m.UserPrincipalName, "externalDirectoryObjectId": m.ExternalDirectoryObjectID,
		"ForwardingSmtpAddress": f.SMTPAddress, "ForwardingAddress": f.Address, "DeliverToMailboxAndForward": f.DeliverAndForward,
	})
	return b
}

// stillNamed says which of the event's recipients the current forwarding
// still points to, for the detail.
func stillNamed(cur actions.MailboxForwarding, recipients []string) string {
	if len(recipients) == 0 {
		return ""
	}
	have := strings.ToLower(strings.TrimPrefix(strings.ToLower(cur.SMTPAddress), "smtp:"))
	for _, r := range recipients {
		if r = strings.ToLower(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(r)), "smtp:")); r != "" && (r == have || strings.EqualFold(r, cur.Address)) {
			return "; it still forwards to " + r + " as the event said"
		}
	}
	return "; the event named " + strings.Join(recipients, ", ") + ", which it no longer forwards to"
}

// removeMailboxForwarding reads the mailbox's forwarding (kept as Before and in
// the undo step) and clears it. No forwarding is a no-op.
func (e *Executor) removeMailboxForwarding(ctx context.Context, target string, recipients []string, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	m, err := e.getMailbox(ctx, c, target, perm)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	cur := m.forwarding()
	before := forwardingJSON(m, cur)
	name := who(target, m)
	if !cur.Forwards() {
		return actions.Result{Detail: fmt.Sprintf("no mailbox forwarding on %s's mailbox: nothing to remove", name),
			Before: before, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	note := stillNamed(cur, recipients)
	if plan {
		return actions.Result{Detail: fmt.Sprintf("remove mailbox forwarding of %s: %s%s", name, describeForwarding(cur), note),
			Before: before, GraphRequestIDs: c.list()}, nil
	}
	warnings, err := e.setForwarding(ctx, c, target, actions.MailboxForwarding{}, perm)
	if err != nil {
		return actions.Result{Before: before, GraphRequestIDs: c.list()}, err
	}
	if len(warnings) > 0 {
		note += "; Exchange warned: " + strings.Join(warnings, " ")
	}
	undo := map[string]any{"deliver_to_mailbox_and_forward": cur.DeliverAndForward}
	if cur.SMTPAddress != "" {
		undo["forwarding_smtp_address"] = cur.SMTPAddress
	}
	if cur.Address != "" {
		undo["forwarding_address"] = cur.Address
	}
	return actions.Result{
		Detail: fmt.Sprintf("removed mailbox forwarding of %s: %s (the previous values are kept in this record)%s", name, describeForwarding(cur), note),
		Before: before, After: forwardingJSON(m, actions.MailboxForwarding{}), GraphRequestIDs: c.list(),
		Undo: &actions.Step{Action: actions.RestoreMailboxForwarding, Target: actions.Target{User: target}, Params: undo},
	}, nil
}

// restoreMailboxForwarding sets the recorded forwarding back, replacing
// whatever forwarding the mailbox has now (kept as Before).
func (e *Executor) restoreMailboxForwarding(ctx context.Context, target string, f *actions.MailboxForwarding, perm string, plan bool) (actions.Result, error) {
	if f == nil {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: "no forwarding to restore"}
	}
	c := newCalls()
	m, err := e.getMailbox(ctx, c, target, perm)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	cur := m.forwarding()
	before := forwardingJSON(m, cur)
	name := who(target, m)
	if strings.EqualFold(cur.SMTPAddress, f.SMTPAddress) && strings.EqualFold(cur.Address, f.Address) && cur.DeliverAndForward == f.DeliverAndForward {
		return actions.Result{Detail: fmt.Sprintf("%s's mailbox already has %s", name, describeForwarding(*f)),
			Before: before, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	replacing := ""
	if cur.Forwards() {
		replacing = "; replacing " + describeForwarding(cur)
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("set mailbox forwarding of %s back to %s%s", name, describeForwarding(*f), replacing),
			Before: before, GraphRequestIDs: c.list()}, nil
	}
	if _, err := e.setForwarding(ctx, c, target, *f, perm); err != nil {
		return actions.Result{Before: before, GraphRequestIDs: c.list()}, err
	}
	return actions.Result{Detail: fmt.Sprintf("set mailbox forwarding of %s back to %s%s", name, describeForwarding(*f), replacing),
		Before: before, After: forwardingJSON(m, *f), GraphRequestIDs: c.list()}, nil
}

// ResolveUser resolves an identity in any form Exchange's Get-Mailbox -Identity
// accepts (name, alias, display name, the canonical path form of audit records'
// ObjectId "NAMPR11A004.PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/megan.bowen",
// DN, legacyExchangeDN, smtp: address, GUID, UPN, object id:
// https://learn.microsoft.com/powershell/module/exchange/get-mailbox#-identity)
// to the mailbox owner's UPN and Entra object id, so that guards compare and
// actions act on the user, whatever form the record used. It is meant to run
// before the guard stage (the worker's optional resolver role). A UPN or object
// id is answered without a call. An identity that names no mailbox, or more
// than one, is a permanent error naming the identity.
func (e *Executor) ResolveUser(ctx context.Context, identity string) (upn, id string, err error) {
	identity = strings.TrimSpace(identity)
	if actions.ValidUser(identity) {
		if strings.Contains(identity, "@") {
			return identity, "", nil
		}
		return "", identity, nil
	}
	c := newCalls()
	m, err := e.getMailbox(ctx, c, identity, permission(actions.RemoveMailboxForwarding))
	if err != nil {
		var ae *actions.Error
		if errors.As(err, &ae) && ae.Code != CodeInvokeCommandGone && (ae.Status == http.StatusNotFound || ae.Code == "NotFound" || ae.Code == "AmbiguousIdentity") {
			return "", "", &actions.Error{Class: actions.Permanent, Status: ae.Status, Code: "UnresolvedIdentity", RequestID: ae.RequestID,
				Message: fmt.Sprintf("cannot resolve mailbox identity %q to a user: %s", identity, ae.Message)}
		}
		return "", "", fmt.Errorf("resolve mailbox identity %q: %w", identity, err)
	}
	if !actions.ValidUser(m.UserPrincipalName) {
		return "", "", &actions.Error{Class: actions.Permanent, Code: "UnresolvedIdentity",
			Message: fmt.Sprintf("mailbox identity %q resolved to %q, which has no user principal name", identity, m.Identity)}
	}
	return m.UserPrincipalName, m.ExternalDirectoryObjectID, nil
}

// addMailboxForwarding registers the mailbox-forwarding actions (Exchange
// admin API).
func (e *Executor) addMailboxForwarding(h actions.Handlers) {
	h[actions.RemoveMailboxForwarding] = userAction(actions.RemoveMailboxForwarding, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.removeMailboxForwarding(ctx, u, p.Recipients, perm, plan)
	})
	h[actions.RestoreMailboxForwarding] = userAction(actions.RestoreMailboxForwarding, func(ctx context.Context, u string, p actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.restoreMailboxForwarding(ctx, u, p.Forwarding, perm, plan)
	})
}
