package graphexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/responder-sec/responder/internal/actions"
)

// Executor implements actions.Executor with Graph.
type Executor struct {
	client *msgraphsdk.GraphServiceClient
	log    *slog.Logger
}

// New returns an executor over client.
func New(client *msgraphsdk.GraphServiceClient, log *slog.Logger) *Executor {
	if log == nil {
		log = slog.Default()
	}
	return &Executor{client: client, log: log.With("part", "graph")}
}

// Execute dispatches on the action name.
func (e *Executor) Execute(ctx context.Context, req *actions.Request) (actions.Result, error) {
	spec, ok := actions.Lookup(req.Action)
	if !ok {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "UnknownAction", Message: string(req.Action)}
	}
	switch req.Action {
	case actions.DisableUser:
		return e.setAccountEnabled(ctx, req.Target.User, false, spec.Permission)
	case actions.RevokeSessions:
		return e.revokeSessions(ctx, req.Target.User, spec.Permission)
	}
	return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "NotImplemented", Message: "no Graph implementation for " + string(req.Action)}
}

// calls collects the request ids of each Graph call of one action.
type calls struct{ ids []string }

func (c *calls) option() (*khttp.HeadersInspectionOptions, func()) {
	o := khttp.NewHeadersInspectionOptions()
	o.InspectResponseHeaders = true
	return o, func() {
		if h := o.GetResponseHeaders(); h != nil {
			if v := h.Get("request-id"); len(v) > 0 && v[0] != "" {
				c.ids = append(c.ids, v[0])
			}
		}
	}
}

type userState struct {
	ID                string `json:"id,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	AccountEnabled    *bool  `json:"accountEnabled,omitempty"`
}

func (e *Executor) getUser(ctx context.Context, c *calls, user, perm string) (userState, error) {
	opt, done := c.option()
	u, err := e.client.Users().ByUserId(user).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", "userPrincipalName", "accountEnabled"}},
		Options:         []abs.RequestOption{opt},
	})
	done()
	if err != nil {
		return userState{}, Classify(err, "User.Read.All")
	}
	return userState{ID: deref(u.GetId()), UserPrincipalName: deref(u.GetUserPrincipalName()), AccountEnabled: u.GetAccountEnabled()}, nil
}

func (e *Executor) setAccountEnabled(ctx context.Context, user string, enabled bool, perm string) (actions.Result, error) {
	var c calls
	before, err := e.getUser(ctx, &c, user, perm)
	if err != nil {
		return actions.Result{}, err
	}
	bj, _ := json.Marshal(before)
	verb := "disabled"
	if enabled {
		verb = "enabled"
	}
	if before.AccountEnabled != nil && *before.AccountEnabled == enabled {
		return actions.Result{Detail: "account already " + verb, Before: bj, After: bj, GraphRequestIDs: c.ids, AlreadyDone: true}, nil
	}
	body := models.NewUser()
	body.SetAccountEnabled(&enabled)
	opt, done := c.option()
	_, err = e.client.Users().ByUserId(user).Patch(ctx, body, &users.UserItemRequestBuilderPatchRequestConfiguration{Options: []abs.RequestOption{opt}})
	done()
	if err != nil {
		return actions.Result{GraphRequestIDs: c.ids}, Classify(err, perm)
	}
	after := before
	after.AccountEnabled = &enabled
	aj, _ := json.Marshal(after)
	return actions.Result{Detail: "account " + verb, Before: bj, After: aj, GraphRequestIDs: c.ids}, nil
}

func (e *Executor) revokeSessions(ctx context.Context, user, perm string) (actions.Result, error) {
	var c calls
	opt, done := c.option()
	resp, err := e.client.Users().ByUserId(user).RevokeSignInSessions().PostAsRevokeSignInSessionsPostResponse(ctx,
		&users.ItemRevokeSignInSessionsRequestBuilderPostRequestConfiguration{Options: []abs.RequestOption{opt}})
	done()
	if err != nil {
		return actions.Result{GraphRequestIDs: c.ids}, Classify(err, perm)
	}
	value := true
	if resp != nil && resp.GetValue() != nil {
		value = *resp.GetValue()
	}
	aj, _ := json.Marshal(map[string]any{"revokeSignInSessions": value, "at": time.Now().UTC()})
	return actions.Result{Detail: "sign-in sessions revoked (refresh tokens invalidated; access tokens expire within their lifetime)", After: aj, GraphRequestIDs: c.ids}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Classify turns an SDK or transport error into an *actions.Error. It never calls
// the SDK error's Error method (which dereferences a message Microsoft may omit).
func Classify(err error, permission string) *actions.Error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &actions.Error{Class: actions.Transient, Code: "timeout", Message: "the call did not complete in time", Err: err}
	}
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		e := &actions.Error{Status: oe.ResponseStatusCode}
		if me := oe.GetErrorEscaped(); me != nil {
			e.Code = deref(me.GetCode())
			e.Message = deref(me.GetMessage())
			if ie := me.GetInnerError(); ie != nil {
				e.RequestID = deref(ie.GetRequestId())
				e.ClientRequestID = deref(ie.GetClientRequestId())
			}
		}
		fromHeaders(e, oe.ResponseHeaders)
		classifyStatus(e, permission)
		return e
	}
	var ae *abs.ApiError
	if errors.As(err, &ae) {
		e := &actions.Error{Status: ae.ResponseStatusCode, Message: ae.Message}
		fromHeaders(e, ae.ResponseHeaders)
		classifyStatus(e, permission)
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF") {
		return &actions.Error{Class: actions.Transient, Message: "network failure", Err: err}
	}
	// Token acquisition failures (azidentity) are not retryable by waiting.
	if strings.Contains(err.Error(), "AADSTS") || strings.Contains(err.Error(), "authentication failed") {
		return &actions.Error{Class: actions.Permanent, Code: "authentication_failed", Message: firstLine(err.Error())}
	}
	return &actions.Error{Class: actions.Transient, Message: "unexpected failure", Err: err}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func fromHeaders(e *actions.Error, h *abs.ResponseHeaders) {
	if h == nil {
		return
	}
	get := func(k string) string {
		for _, kk := range []string{k, strings.ToLower(k), http.CanonicalHeaderKey(k)} {
			if v := h.Get(kk); len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	if e.RequestID == "" {
		e.RequestID = get("request-id")
	}
	if e.ClientRequestID == "" {
		e.ClientRequestID = get("client-request-id")
	}
	if ra := get("Retry-After"); ra != "" {
		if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
}

func classifyStatus(e *actions.Error, permission string) {
	switch {
	case e.Status == http.StatusTooManyRequests || e.Code == "AF429" || e.Code == "ApplicationThrottled" || e.Code == "TooManyRequests":
		e.Class = actions.Throttled
	case e.Status >= 500 || e.Status == http.StatusRequestTimeout:
		e.Class = actions.Transient
	default:
		e.Class = actions.Permanent
	}
	if e.Status == http.StatusForbidden && e.Class == actions.Permanent && permission != "" {
		e.Permission = permission
	}
	if e.Code == "" {
		e.Code = fmt.Sprintf("HTTP%d", e.Status)
	}
}
