package main

import (
	"fmt"
	"os"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/feeds"
	"github.com/responder-sec/responder/internal/m365"
)

type feedsCmd struct {
	Status   feedsStatusCmd   `cmd:"" help:"Per feed and content type: cursor, last success, lag, events, pending work, last error."`
	Backfill feedsBackfillCmd `cmd:"" help:"Re-read a window of the Management Activity API (up to 7 days) without duplicating events."`
}

type feedsStatusCmd struct {
	clientFlags
	JSON bool `name:"json" help:"One JSON object per line."`
}

func (c *feedsStatusCmd) Run(e *env) error {
	_, tenant, err := c.resolve()
	if err != nil {
		return err
	}
	nc, js, err := connectJS(e.ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(e.ctx, bus.BucketState)
	if err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	lines, err := feeds.Status(e.ctx, bus.TenantState(kv, tenant), nil)
	if err != nil {
		return err
	}
	return feeds.WriteStatus(e.stdout, lines, c.JSON)
}

type feedsBackfillCmd struct {
	tenantFlags
	NatsURL string        `help:"NATS URL of the engine (default: from the local context)." env:"RESPONDER_NATS_URL"`
	DataDir string        `help:"Data directory holding the local context." env:"RESPONDER_DATA_DIR" default:"${default_data_dir}"`
	Since   time.Duration `help:"How far back to re-read (at most 7 days)." required:""`
}

func (c *feedsBackfillCmd) Run(e *env) error {
	creds, err := c.credentials()
	if err != nil {
		return err
	}
	_, cred, err := m365.NewGraphClient(creds)
	if err != nil {
		return err
	}
	nc, js, err := connectJS(e.ctx, clientFlags{NatsURL: c.NatsURL, DataDir: c.DataDir, TenantID: c.TenantID})
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(e.ctx, bus.BucketState)
	if err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	return feeds.Backfill(e.ctx, feeds.ManagementConfig{
		Tenant: creds.TenantID, HTTP: m365.BearerClient(creds, cred, creds.ManageScope()), BaseURL: creds.ManageURL,
		JS: js, KV: bus.TenantState(kv, creds.TenantID), Logger: e.log,
	}, c.Since, os.Stderr)
}
