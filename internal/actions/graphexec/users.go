package graphexec

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"

	"github.com/responder-sec/responder/internal/actions"
)

type userState struct {
	ID                string `json:"id,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	AccountEnabled    *bool  `json:"accountEnabled,omitempty"`
}

const permUserRead = "User.Read.All"

// getUser reads the user's id, UPN and accountEnabled (batched).
func (e *Executor) getUser(ctx context.Context, c *calls, user string) (userState, error) {
	r := e.batch.do(ctx, c, &entraCall{kind: "GET user", method: http.MethodGet,
		url: "/" + seg("users", user) + "?" + query("$select", "id,userPrincipalName,accountEnabled"), units: 1, perm: permUserRead})
	if r.err != nil {
		return userState{}, e.userGone(ctx, c, user, r.err) // gone.go
	}
	var u userState
	if err := json.Unmarshal(r.body, &u); err != nil {
		return userState{}, Classify(fmt.Errorf("decode user: %w", err), permUserRead)
	}
	return u, nil
}

func (e *Executor) setAccountEnabled(ctx context.Context, user string, enabled bool, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	before, err := e.getUser(ctx, c, user)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	bj, _ := json.Marshal(before)
	verb := "disabled"
	inverse := actions.EnableUser
	if enabled {
		verb, inverse = "enabled", actions.DisableUser
	}
	if before.AccountEnabled != nil && *before.AccountEnabled == enabled {
		return actions.Result{Detail: "account already " + verb, Before: bj, After: bj, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	after := before
	after.AccountEnabled = &enabled
	aj, _ := json.Marshal(after)
	if plan {
		return actions.Result{Detail: fmt.Sprintf("set accountEnabled=%t for %s (%s)", enabled, before.UserPrincipalName, before.ID), Before: bj, After: aj, GraphRequestIDs: c.list()}, nil
	}
	r := e.batch.do(ctx, c, &entraCall{kind: "PATCH user", method: http.MethodPatch, url: "/" + seg("users", user),
		body: map[string]any{"accountEnabled": enabled}, units: 1, writes: 1, perm: perm})
	if r.err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, e.roleDenied(ctx, c, user, r.err, perm, false)
	}
	return actions.Result{Detail: "account " + verb, Before: bj, After: aj, GraphRequestIDs: c.list(),
		Undo: &actions.Step{Action: inverse, Target: actions.Target{User: user}}}, nil
}

func (e *Executor) revokeSessions(ctx context.Context, user, perm string, plan bool) (actions.Result, error) {
	if plan {
		return actions.Result{Detail: "revoke every refresh token and session cookie of " + user}, nil
	}
	c := newCalls()
	r := e.batch.do(ctx, c, &entraCall{kind: "POST revoke", method: http.MethodPost, url: "/" + seg("users", user, "revokeSignInSessions"),
		units: 1, writes: 1, perm: perm})
	if r.err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, e.userGone(ctx, c, user, r.err) // gone.go
	}
	aj, _ := json.Marshal(map[string]any{"revokeSignInSessions": true, "at": time.Now().UTC()})
	return actions.Result{Detail: "sign-in sessions revoked (refresh tokens invalidated; access tokens expire within their lifetime)", After: aj, GraphRequestIDs: c.list()}, nil
}

// resetPassword sets a generated password that must be changed at next sign-in.
// The password is returned in Result.Secret only: never in Detail, Before,
// After, logs or errors.
func (e *Executor) resetPassword(ctx context.Context, user, perm string, plan bool) (actions.Result, error) {
	if plan {
		return actions.Result{Detail: "set a generated password on " + user + " and force a change at next sign-in (the password would go to an analyst requester only)"}, nil
	}
	pw, err := e.cfg.NewPassword()
	if err != nil {
		return actions.Result{}, &actions.Error{Class: actions.Transient, Code: "PasswordGeneration", Message: "could not generate a password"}
	}
	c := newCalls()
	if err := e.budgets.Entra(ctx, 1, 1); err != nil {
		return actions.Result{}, Classify(err, perm)
	}
	_, err = e.raw(ctx, c, abs.PATCH, seg("users", user), "", map[string]any{
		"passwordProfile": map[string]any{"password": pw, "forceChangePasswordNextSignIn": true},
	})
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, e.userGone(ctx, c, user, e.roleDenied(ctx, c, user, err, perm, true))
	}
	aj, _ := json.Marshal(map[string]any{"passwordProfile": map[string]any{"forceChangePasswordNextSignIn": true, "password": "[never recorded]"}, "at": time.Now().UTC()})
	return actions.Result{Detail: "password reset to a generated value; the user must change it at next sign-in", After: aj,
		GraphRequestIDs: c.list(), Secret: pw}, nil
}

const (
	pwLower   = "abcdefghijkmnopqrstuvwxyz"
	pwUpper   = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	pwDigits  = "23456789"
	pwSymbols = "!#%+-.=?@_~"
)

// generatePassword returns 20 characters from crypto/rand with every class.
func generatePassword() (string, error) {
	all := pwLower + pwUpper + pwDigits + pwSymbols
	pick := func(set string) (byte, error) {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return 0, err
		}
		return set[n.Int64()], nil
	}
	out := make([]byte, 0, 20)
	for _, set := range []string{pwLower, pwUpper, pwDigits, pwSymbols} {
		b, err := pick(set)
		if err != nil {
			return "", err
		}
		out = append(out, b)
	}
	for len(out) < 20 {
		b, err := pick(all)
		if err != nil {
			return "", err
		}
		out = append(out, b)
	}
	for i := len(out) - 1; i > 0; i-- { // Fisher-Yates with crypto/rand
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

type riskyUser struct {
	ID          string `json:"id"`
	RiskLevel   string `json:"riskLevel"`
	RiskState   string `json:"riskState"`
	RiskDetail  string `json:"riskDetail"`
	UPN         string `json:"userPrincipalName,omitempty"`
	LastUpdated string `json:"riskLastUpdatedDateTime,omitempty"`
}

// risk confirms a user compromised or dismisses their risk (Identity
// Protection takes object ids, so a UPN is resolved first).
func (e *Executor) risk(ctx context.Context, user string, confirm bool, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	u, err := e.getUser(ctx, c, user)
	if err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, err
	}
	var before riskyUser
	b, err := e.idpCall(ctx, c, abs.GET, seg("identityProtection", "riskyUsers", u.ID), nil)
	if err != nil {
		ce := Classify(err, "IdentityRiskyUser.Read.All")
		if ce.Status != http.StatusNotFound {
			return actions.Result{GraphRequestIDs: c.list()}, ce
		}
		before = riskyUser{ID: u.ID, RiskLevel: "none", RiskState: "none"}
	} else if err := json.Unmarshal(b, &before); err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, Classify(fmt.Errorf("decode risky user: %w", err), perm)
	}
	bj, _ := json.Marshal(before)
	want, path, verb := "confirmedCompromised", "confirmCompromised", "confirmed compromised"
	if !confirm {
		want, path, verb = "dismissed", "dismiss", "risk dismissed"
	}
	if before.RiskState == want || (!confirm && (before.RiskState == "none" || before.RiskState == "remediated" || before.RiskState == "confirmedSafe")) {
		return actions.Result{Detail: fmt.Sprintf("%s: risk state is %s", verb, before.RiskState), Before: bj, After: bj, GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	if plan {
		return actions.Result{Detail: fmt.Sprintf("%s for %s (risk state %s, level %s)", path, user, before.RiskState, before.RiskLevel), Before: bj, GraphRequestIDs: c.list()}, nil
	}
	if _, err := e.idpCall(ctx, c, abs.POST, seg("identityProtection", "riskyUsers", path), map[string]any{"userIds": []string{u.ID}}); err != nil {
		return actions.Result{GraphRequestIDs: c.list()}, Classify(err, perm)
	}
	after := before
	after.RiskState = want
	aj, _ := json.Marshal(after)
	return actions.Result{Detail: verb, Before: bj, After: aj, GraphRequestIDs: c.list()}, nil
}

// addUsers registers the user actions. revoke_sessions is not repeat-safe
// (a repeat signs the user out again): its Probe tells whether an
// interrupted attempt took effect.
func (e *Executor) addUsers(h actions.Handlers) {
	h[actions.DisableUser] = userAction(actions.DisableUser, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.setAccountEnabled(ctx, u, false, perm, plan)
	})
	h[actions.EnableUser] = userAction(actions.EnableUser, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.setAccountEnabled(ctx, u, true, perm, plan)
	})
	rs := userAction(actions.RevokeSessions, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.revokeSessions(ctx, u, perm, plan)
	})
	rs.Probe = e.revokeApplied
	h[actions.RevokeSessions] = rs
	h[actions.ResetPassword] = userAction(actions.ResetPassword, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.resetPassword(ctx, u, perm, plan)
	})
	h[actions.ConfirmCompromised] = userAction(actions.ConfirmCompromised, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.risk(ctx, u, true, perm, plan)
	})
	h[actions.DismissRisk] = userAction(actions.DismissRisk, func(ctx context.Context, u string, _ actions.Params, perm string, plan bool) (actions.Result, error) {
		return e.risk(ctx, u, false, perm, plan)
	})
}
