package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

type actCmd struct {
	DisableUser    actUserCmd `cmd:"" name:"disable-user" help:"Block the user's sign-in (accountEnabled=false)."`
	RevokeSessions actUserCmd `cmd:"" name:"revoke-sessions" help:"Revoke the user's sign-in sessions and refresh tokens."`
}

// actCommon are the flags every action request has.
type actCommon struct {
	clientFlags
	Reason            string        `help:"Why (kept in the audit trail)." required:""`
	Ticket            string        `help:"Ticket or incident id."`
	DryRun            bool          `help:"Record what would be done; change nothing."`
	Wait              time.Duration `help:"How long to wait for the outcome." default:"60s"`
	JSON              bool          `name:"json" help:"Print one JSON object."`
	Analyst           string        `help:"Analyst name recorded as the requester." env:"RESPONDER_ANALYST"`
	OverrideProtected bool          `help:"Act on a protected identity (audited)."`
}

type actUserCmd struct {
	actCommon
	User string `help:"UPN or object id." required:""`
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
	return c.send(e, action, actions.Target{User: c.User})
}

func (c *actCommon) send(e *env, action actions.Name, target actions.Target) error {
	url, tenant, err := c.resolve()
	if err != nil {
		return err
	}
	analyst := c.Analyst
	if analyst == "" {
		analyst = os.Getenv("USER")
	}
	if analyst == "" {
		analyst = "analyst"
	}
	req := &actions.Request{
		Version: actions.Version, ID: uuid.NewString(), Action: action, Target: target,
		RequestedBy: audit.Actor{Kind: "analyst", Name: analyst},
		Reason:      c.Reason, Ticket: c.Ticket, DryRun: c.DryRun, OverrideProtected: c.OverrideProtected,
		RequestedAt: time.Now().UTC(),
	}
	if err := req.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Wait)
	defer cancel()
	nc, err := nats.Connect(url, nats.Name("responder-act"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to the engine's NATS at %s: %w", url, err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(bus.ResultSubject(tenant, req.ID))
	if err != nil {
		return fmt.Errorf("subscribe for the outcome: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := actions.Publish(ctx, js, tenant, req); err != nil {
		return err
	}
	if !c.JSON {
		fmt.Fprintf(e.stderr, "requested %s on %s (request %s); waiting up to %s\n", action, describe(target), req.ID, c.Wait)
	}
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
	if c.JSON {
		b, _ := json.Marshal(o)
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
	}
	return t.MessageID
}
