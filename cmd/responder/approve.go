package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
)

// signerFlags choose the key a command signs with.
type signerFlags struct {
	Key     string        `help:"Key file (nkey seed) to sign with (default: the local administrator key in the data directory)." env:"RESPONDER_KEY" type:"path"`
	Analyst string        `help:"Your name in the analysts file (informational; the engine goes by the key)." env:"RESPONDER_ANALYST"`
	Timeout time.Duration `help:"How long to wait for the engine." default:"15s"`
}

func (f signerFlags) keyPair(dataDir string) (nkeys.KeyPair, string, error) {
	if f.Key != "" {
		kp, err := analyst.ReadKeyFile(f.Key)
		return kp, f.Analyst, err
	}
	kp, err := analyst.LoadDefaultKey(dataDir)
	name := f.Analyst
	if name == "" {
		name = analyst.LocalAdminName
	}
	return kp, name, err
}

// sendCommand signs and sends one approval command to the engine.
func sendCommand(e *env, cf clientFlags, sf signerFlags, c approval.Command) (approval.Reply, error) {
	url, tenant, err := cf.resolve()
	if err != nil {
		return approval.Reply{}, err
	}
	kp, name, err := sf.keyPair(cf.DataDir)
	if err != nil {
		return approval.Reply{}, err
	}
	c.By = audit.Actor{Kind: "analyst", Name: name}
	ctx, cancel := context.WithTimeout(e.ctx, sf.Timeout)
	defer cancel()
	nc, err := connectNATS(url, "responder-"+c.Op, cf.natsAuthFlags, kp)
	if err != nil {
		return approval.Reply{}, err
	}
	defer nc.Close()
	rep, err := approval.Send(ctx, nc, tenant, c, kp)
	if err != nil {
		return rep, err
	}
	if !rep.OK {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

type pendingCmd struct {
	clientFlags
	signerFlags
	JSON bool `name:"json" help:"Print one JSON object per line."`
}

func (c *pendingCmd) Run(e *env) error {
	rep, err := sendCommand(e, c.clientFlags, c.signerFlags, approval.Command{Op: approval.OpList})
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		for _, p := range rep.Pending {
			if err := enc.Encode(p); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rep.Pending) == 0 {
		fmt.Fprintln(e.stdout, "nothing is waiting for approval")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tACTION\tTARGET\tREQUESTER\tAPPROVALS\tEXPIRES\tWHY")
	for _, p := range rep.Pending {
		var target []string
		for _, v := range p.Target {
			target = append(target, v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%s\t%d/%d\t%s\t%s\n", p.RequestID, p.Action, strings.Join(target, ","),
			p.Requester.Kind, p.Requester.Name, len(p.Approvals), p.Required,
			p.ExpiresAt.Local().Format(time.DateTime), strings.Join(p.Why, "; "))
	}
	return tw.Flush()
}

type approveCmd struct {
	clientFlags
	signerFlags
	ID string `arg:"" help:"Request id (from responder pending)."`
}

func (c *approveCmd) Run(e *env) error {
	rep, err := sendCommand(e, c.clientFlags, c.signerFlags, approval.Command{Op: approval.OpApprove, RequestID: c.ID})
	if err != nil {
		return err
	}
	p := rep.Entry
	if rep.Complete {
		fmt.Fprintf(e.stdout, "approved %s (%s); released to the action workers\n", c.ID, p.Action)
	} else {
		fmt.Fprintf(e.stdout, "approval recorded for %s: %d of %d\n", c.ID, len(p.Approvals), p.Required)
	}
	return nil
}

type denyCmd struct {
	clientFlags
	signerFlags
	ID     string `arg:"" help:"Request id (from responder pending)."`
	Reason string `help:"Why (kept in the audit trail)." required:""`
}

func (c *denyCmd) Run(e *env) error {
	if _, err := sendCommand(e, c.clientFlags, c.signerFlags, approval.Command{Op: approval.OpDeny, RequestID: c.ID, Reason: c.Reason}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "denied %s\n", c.ID)
	return nil
}
