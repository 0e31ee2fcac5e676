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

// TestActDefenderAndUndo: `act isolate-device` isolates a device named by its
// DNS name through a running engine (signed request, worker, Defender API with
// its own token audience, audit), `act undo` releases it, `act block-file`
// adds an indicator naming the request, and a CIDR to block-device-ip is
// refused with a non-zero exit and nothing blocked.
func TestActDefenderAndUndo(t *testing.T) {
	sim, dataDir, eng, _ := runningEngine(t, nil)
	act := func(args ...string) (int, map[string]any, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"act"}, append(args, "--data-dir", dataDir, "--json", "--wait", "60s")...), &out, &errb)
		var o map[string]any
		_ = json.Unmarshal(out.Bytes(), &o)
		return code, o, out.String() + errb.String()
	}
	code, o, text := act("isolate-device", "--device", "desktop-06.contoso.com", "--reason", "ransomware INC-7")
	if m, _ := sim.MachineByName("desktop-06.contoso.com"); code != 0 || o["outcome"] != "succeeded" || !m.Isolated {
		t.Fatalf("isolate-device: exit %d %s", code, text)
	}
	results, err := eng.Bus().NC.SubscribeSync("responder." + bus.Token(eng.Tenant()) + ".result.>")
	if err != nil {
		t.Fatal(err)
	}
	defer results.Unsubscribe()
	if code, u, text := act("undo", o["request_id"].(string), "--reason", "contained"); code != 0 || u["outcome"] != "succeeded" {
		t.Fatalf("undo: exit %d %s", code, text)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		msg, err := results.NextMsgWithContext(wctx)
		if err != nil {
			t.Fatalf("no outcome of release_device: %v", err)
		}
		var io map[string]any
		if json.Unmarshal(msg.Data, &io) == nil && io["action"] == "release_device" {
			if io["outcome"] != "succeeded" {
				t.Fatalf("release_device: %v", io)
			}
			break
		}
	}
	if m, _ := sim.MachineByName("desktop-06.contoso.com"); m.Isolated {
		t.Fatal("still isolated after undo")
	}
	hash := strings.Repeat("9f", 32)
	code, b, text := act("block-file", "--sha256", hash, "--expires", "3d", "--reason", "dropper INC-7")
	inds := sim.Indicators()
	if code != 0 || b["outcome"] != "succeeded" || len(inds) != 1 || inds[0].IndicatorValue != hash || !strings.Contains(inds[0].Title, b["request_id"].(string)) {
		t.Fatalf("block-file: exit %d %s %+v", code, text, inds)
	}
	// act validates before signing: refused with a non-zero exit, never sent
	// (a request that reaches the worker anyway is rejected and audited:
	// defenderexec's TestDefenderMisuse).
	code, _, text = act("block-device-ip", "--ip", "203.0.113.0/24", "--reason", "oops")
	if code == 0 || !strings.Contains(text, "CIDR") || len(sim.Indicators()) != 1 {
		t.Errorf("CIDR: exit %d %s", code, text)
	}
}
