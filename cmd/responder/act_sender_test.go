package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
)

// TestActBlockSenderAndUndo: `act block-sender` blocks the address in the
// emulated Tenant Allow/Block List through a running engine (signed request,
// worker, Exchange admin API, audit), `act undo` removes that entry, and the
// tenant's own domain is refused with a non-zero exit and nothing blocked.
func TestActBlockSenderAndUndo(t *testing.T) {
	sim, dataDir, eng, _ := runningEngine(t, nil)
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
	results, err := eng.Bus().NC.SubscribeSync("responder." + bus.Token(eng.Tenant()) + ".result.>")
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
