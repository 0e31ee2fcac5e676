package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditquery"
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

// connectJS connects as the engine, for the operator's commands that work on
// the engine's own state (feeds status, feeds backfill): with the engine key of
// the data directory, or the --nats-nkey / --nats-creds given.
func connectJS(_ context.Context, cf clientFlags) (*nats.Conn, jetstream.JetStream, error) {
	url := cf.NatsURL
	if url == "" {
		if lc, err := readContext(cf.DataDir); err == nil {
			url = lc.NatsURL
		}
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	var kp nkeys.KeyPair
	if cf.NatsNkey == "" && cf.NatsCreds == "" {
		k, err := analyst.ReadKeyFile(analyst.EngineKeyPath(cf.DataDir))
		if err != nil {
			return nil, nil, fmt.Errorf("this command works on the engine's state and connects as the engine: %w", err)
		}
		kp = k
	}
	nc, err := connectNATS(url, "responder-operator", cf.natsAuthFlags, kp)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// auditSource reads the audit trail through the engine's query service
// (internal/auditquery), as the holder of the command's key: no identity but
// the engine may read the AUDIT stream itself. It is the one place the CLI
// reads records.
type auditSource struct {
	nc     *nats.Conn
	client auditquery.Client
}

// auditAccess are the flags of a command that reads the audit trail.
type auditAccess struct {
	clientFlags
	signerFlags
}

func openAuditSource(a auditAccess) (*auditSource, error) {
	url, tenant, err := a.resolve()
	if err != nil {
		return nil, err
	}
	kp, name, err := a.keyPair(a.DataDir)
	if err != nil {
		return nil, err
	}
	nc, err := connectNATS(url, "responder-audit", a.natsAuthFlags, kp)
	if err != nil {
		return nil, err
	}
	return &auditSource{nc: nc, client: auditquery.Client{NC: nc, Tenant: tenant, Key: kp, Name: name, Timeout: a.Timeout}}, nil
}

func (s *auditSource) Close() { s.nc.Close() }

// each calls fn for every stored message f selects, as stored (stream
// sequence, subject, bytes), in stream order, up to the end of the stream when
// it began; first and last are the stream's sequences then.
func (s *auditSource) each(ctx context.Context, f audit.Filter, fn func(seq uint64, subject string, data []byte) error) (first, last uint64, err error) {
	return s.client.List(ctx, auditquery.FromAudit(f), func(it auditquery.Item) error {
		return fn(it.Seq, it.Subject, it.Data)
	})
}

// records calls fn for every record f selects (messages that are not records
// are skipped; verify names them).
func (s *auditSource) records(ctx context.Context, f audit.Filter, fn func(audit.Record) error) error {
	_, _, err := s.each(ctx, f, func(_ uint64, _ string, data []byte) error {
		var r audit.Record
		if json.Unmarshal(data, &r) != nil || !f.Match(r) {
			return nil
		}
		return fn(r)
	})
	return err
}

type auditListCmd struct {
	auditAccess
	auditFilter
	JSON bool `name:"json" help:"One JSON record per line."`
}

func (c *auditListCmd) Run(e *env) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	src, err := openAuditSource(c.auditAccess)
	if err != nil {
		return err
	}
	defer src.Close()
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		return src.records(e.ctx, f, func(r audit.Record) error { return enc.Encode(r) })
	}
	tab := audit.NewTable(e.stdout)
	if err := tab.WriteHeader(); err != nil {
		return err
	}
	return src.records(e.ctx, f, tab.Write)
}

type auditShowCmd struct {
	auditAccess
	ID string `arg:"" help:"Record id or request id."`
}

func (c *auditShowCmd) Run(e *env) error {
	src, err := openAuditSource(c.auditAccess)
	if err != nil {
		return err
	}
	defer src.Close()
	r, err := src.client.Get(e.ctx, c.ID)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

// The verify and export commands are in auditverify.go.
