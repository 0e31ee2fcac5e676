package main

import (
	"context"
	"time"

	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/doctor"
	"github.com/responder-sec/responder/internal/m365"
)

type doctorCmd struct {
	tenantFlags
	Feeds   []string      `help:"Feeds to check (default: all): audit, signin, risk_detection, risky_user." sep:","`
	Actions []string      `help:"Actions to check (default: all)." sep:","`
	Timeout time.Duration `help:"How long to wait for tokens." default:"60s"`
}

// doctorFailed gives doctor a non-zero exit status when something cannot work.
type doctorFailed struct{ err error }

func (e *doctorFailed) Error() string { return e.err.Error() }
func (e *doctorFailed) ExitCode() int { return 4 }

func (c *doctorCmd) Run(e *env) error {
	creds, err := c.credentials()
	if err != nil {
		return err
	}
	cred, err := creds.TokenCredential()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	rep, err := doctor.Check(ctx, doctor.Config{
		Credential: cred, GraphScope: creds.GraphScope(), ManageScope: creds.ManageScope(), ExchangeScope: creds.ExchangeScope(),
		DefenderScope: m365.DefenderScope,
		Feeds:         c.Feeds, Actions: c.Actions, GraphURL: creds.GraphURL, HTTPClient: creds.HTTPClient,
		// The undocumented InvokeCommand endpoint, probed through the actions' adapter.
		ExchangeProbe: graphexec.InvokeCommandProbe(m365.BearerClient(creds, cred, creds.ExchangeScope()), creds.ExchangeAdminURL(), creds.TenantID),
	})
	if err != nil {
		return err
	}
	if err := rep.Print(e.stdout); err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return &doctorFailed{err: err}
	}
	return nil
}
