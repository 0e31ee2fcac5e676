package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestActBlockSenderAndUndo: `act block-sender` blocks the address in the
// emulated Tenant Allow/Block List through a running engine (signed request,
// worker, Exchange admin API, audit), `act undo` removes that entry, and the
// tenant's own domain is refused with a non-zero exit and nothing blocked.
func TestActBlockSenderAndUndo(t *testing.T) {
	clearEnv(t)
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	info := sim.Info()
	dataDir := t.TempDir()
	eng, err := engine.New(context.Background(), engine.Config{
		Bus: bus.Config{StoreDir: filepath.Join(dataDir, "nats"), Port: -1},
		Credentials: m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, ExchangeURL: info.ExchangeURL, HTTPClient: sim.HTTPClient()},
		DataDir: dataDir, PlaybookDir: "../../playbooks", Feeds: []string{}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := writeContext(dataDir, localContext{NatsURL: eng.Bus().ClientURL(), TenantID: info.TenantID}); err != nil {
		t.Fatal(err)
	}
	act := func(args ...string) (int, map[string]any, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"act"}, append(args, "--data-dir", dataDir, "--json", "--wait", "60s")...), &out, &errb)
		var o map[string]any
		_ = json.Unmarshal(out.Bytes(), &o)
		return code, o, out.String() + errb.String()
	}
	code, o, text := act("block-sender", "--sender", "phisher@evil.example", "--expires", "7d", "--reason", "phish INC-9")
	if code != 0 || o["outcome"] != "succeeded" {
		t.Fatalf("block-sender: exit %d %s", code, text)
	}
	entries := sim.TABLSenders()
	if len(entries) != 1 || entries[0].Value != "phisher@evil.example" || !strings.Contains(entries[0].Notes, o["request_id"].(string)) {
		t.Fatalf("tenant list: %+v", entries)
	}
	// The inverse is a request of its own: wait for its outcome on the
	// result subjects (the engine's connection sees every requester's).
	results, err := eng.Bus().NC.SubscribeSync("responder." + bus.Token(info.TenantID) + ".result.>")
	if err != nil {
		t.Fatal(err)
	}
	defer results.Unsubscribe()
	code, u, text := act("undo", o["request_id"].(string), "--reason", "false positive")
	if code != 0 || u["outcome"] != "succeeded" {
		t.Fatalf("undo: exit %d %s", code, text)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		msg, err := results.NextMsgWithContext(wctx)
		if err != nil {
			t.Fatalf("no outcome of unblock_sender: %v", err)
		}
		var io map[string]any
		if json.Unmarshal(msg.Data, &io) == nil && io["action"] == "unblock_sender" {
			if io["outcome"] != "succeeded" {
				t.Fatalf("unblock_sender: %v", io)
			}
			break
		}
	}
	if left := sim.TABLSenders(); len(left) != 0 {
		t.Fatalf("undo left %+v", left)
	}
	code, r, text := act("block-sender", "--sender", "contoso.com", "--reason", "oops")
	if code == 0 || r["outcome"] != "refused" || !strings.Contains(text, "verified domain") || len(sim.TABLSenders()) != 0 {
		t.Errorf("own domain: exit %d %s", code, text)
	}
}
