package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
)

type auditCmd struct {
	List   auditListCmd   `cmd:"" help:"List audit records (table, or --json one per line)."`
	Show   auditShowCmd   `cmd:"" help:"Show one whole record (by record id or request id)."`
	Verify auditVerifyCmd `cmd:"" help:"Recompute the hash chain and name the first broken record."`
	Export auditExportCmd `cmd:"" help:"Export records as JSONL or CSV."`
}

type auditFilter struct {
	Since    string `help:"Records at or after this time (RFC 3339) or this long ago (e.g. 24h)."`
	Until    string `help:"Records before this time (RFC 3339) or this long ago."`
	Actor    string `help:"Actor name or kind (playbook, analyst, engine)."`
	Action   string `help:"Action name (disable_user)."`
	Target   string `help:"Target (UPN, object id, IP)."`
	Outcome  string `help:"Outcome (succeeded, failed, refused…)."`
	Playbook string `help:"Playbook name."`
	Request  string `help:"Request id."`
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

func (f auditFilter) filter() (audit.Filter, error) {
	now := time.Now()
	since, err := parseWhen(f.Since, now)
	if err != nil {
		return audit.Filter{}, fmt.Errorf("--since: %w", err)
	}
	until, err := parseWhen(f.Until, now)
	if err != nil {
		return audit.Filter{}, fmt.Errorf("--until: %w", err)
	}
	return audit.Filter{Since: since, Until: until, Actor: f.Actor, Action: f.Action, Target: f.Target,
		Outcome: f.Outcome, Playbook: f.Playbook, RequestID: f.Request}, nil
}

// connectJS connects to the engine's NATS for reading.
func connectJS(ctx context.Context, cf clientFlags) (*nats.Conn, jetstream.JetStream, error) {
	url := cf.NatsURL
	if url == "" {
		if lc, err := readContext(cf.DataDir); err == nil {
			url = lc.NatsURL
		}
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Name("responder-audit"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

type auditListCmd struct {
	clientFlags
	auditFilter
	JSON bool `name:"json" help:"One JSON record per line."`
}

func (c *auditListCmd) Run(e *env) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	nc, js, err := connectJS(e.ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer nc.Close()
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		return audit.List(e.ctx, js, f, func(r audit.Record) error { return enc.Encode(r) })
	}
	tab := audit.NewTable(e.stdout)
	if err := tab.WriteHeader(); err != nil {
		return err
	}
	return audit.List(e.ctx, js, f, tab.Write)
}

type auditShowCmd struct {
	clientFlags
	ID string `arg:"" help:"Record id or request id."`
}

func (c *auditShowCmd) Run(e *env) error {
	nc, js, err := connectJS(e.ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := audit.Get(e.ctx, js, c.ID)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

type auditVerifyCmd struct {
	clientFlags
	File    string `help:"Verify an exported JSONL file offline instead of the stream." type:"existingfile"`
	Partial bool   `help:"The file is a filtered export: check each record and the links between consecutive ones, counting gaps."`
}

type verifyError struct{ msg string }

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) ExitCode() int { return 4 }

func (c *auditVerifyCmd) Run(e *env) error {
	var (
		res audit.VerifyResult
		err error
	)
	if c.File != "" {
		f, ferr := os.Open(c.File)
		if ferr != nil {
			return ferr
		}
		defer f.Close()
		if c.Partial {
			res, err = audit.VerifyPartial(f)
		} else {
			res, err = audit.VerifyReader(f)
		}
	} else {
		nc, js, cerr := connectJS(e.ctx, c.clientFlags)
		if cerr != nil {
			return cerr
		}
		defer nc.Close()
		res, err = audit.Verify(e.ctx, js)
	}
	if err != nil {
		return err
	}
	if !res.OK {
		where := ""
		switch {
		case res.FirstBad != nil:
			where = fmt.Sprintf(" at record #%d (%s)", res.FirstBad.Seq, res.FirstBad.ID)
		case res.BadLine > 0:
			where = fmt.Sprintf(" at line %d", res.BadLine)
		case res.BadSeq > 0:
			where = fmt.Sprintf(" at stream sequence %d", res.BadSeq)
		}
		return &verifyError{msg: fmt.Sprintf("audit chain BROKEN%s: %s (%d records read)", where, res.Reason, res.Records)}
	}
	fmt.Fprintf(e.stdout, "audit chain verified: %d records (seq %d..%d), last hash %s\n", res.Records, res.FirstSeq, res.LastSeq, res.LastHash)
	if res.FirstSeq > 1 {
		fmt.Fprintf(e.stdout, "note: the stream starts at seq %d: older records were removed by retention\n", res.FirstSeq)
	}
	if res.Missing > 0 {
		fmt.Fprintf(e.stdout, "note: %d records not in this export (filtered)\n", res.Missing)
	}
	fmt.Fprintln(e.stdout, "keep the last hash somewhere the engine cannot write: it proves the end of the chain was not cut off or rewritten")
	return nil
}

type auditExportCmd struct {
	clientFlags
	auditFilter
	Format string `help:"Output format." enum:"jsonl,csv" default:"jsonl"`
	Output string `short:"o" help:"Write to this file instead of stdout."`
}

func (c *auditExportCmd) Run(e *env) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	nc, js, err := connectJS(e.ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer nc.Close()
	w := e.stdout
	if c.Output != "" {
		file, err := os.OpenFile(c.Output, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	return audit.Export(e.ctx, js, f, c.Format, w)
}
