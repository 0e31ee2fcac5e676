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

// TestActWaitZeroQueues: `act --wait 0` queues the request and returns at
// once with its id (it used to fail the publish itself: the wait bounded the
// queuing too); the request still runs, and its outcome is the one the
// requester's result subject carries.
func TestActWaitZeroQueues(t *testing.T) {
	sim, dataDir, eng, _ := runningEngine(t, nil)
	results, err := eng.Bus().NC.SubscribeSync("responder." + bus.Token(eng.Tenant()) + ".result.>")
	if err != nil {
		t.Fatal(err)
	}
	defer results.Unsubscribe()
	var user string
	for _, u := range sim.Users() {
		if u.AccountEnabled && u.RevokeCount == 0 && u.UserPrincipalName != "" && !protectedByDefault(u.UserPrincipalName) {
			user = u.UserPrincipalName
			break
		}
	}
	if user == "" {
		t.Fatal("no user to act on in the emulated tenant")
	}
	var out, errb bytes.Buffer
	code := run([]string{"act", "revoke-sessions", "--user", user, "--reason", "queued INC-7", "--data-dir", dataDir, "--json", "--wait", "0s"}, &out, &errb)
	var q map[string]string
	if code != 0 || json.Unmarshal(out.Bytes(), &q) != nil || q["status"] != "queued" || q["request_id"] == "" {
		t.Fatalf("act --wait 0: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		msg, err := results.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("no outcome for the queued request %s: %v", q["request_id"], err)
		}
		var o map[string]any
		if json.Unmarshal(msg.Data, &o) == nil && o["request_id"] == q["request_id"] {
			if o["outcome"] != "succeeded" {
				t.Fatalf("queued request: %v", o)
			}
			break
		}
	}
	if u, _ := sim.User(user); u.RevokeCount != 1 {
		t.Errorf("%s revoked %d times, want once", user, u.RevokeCount)
	}
}

// protectedByDefault: the seeded break-glass accounts, which the engine
// refuses to touch.
func protectedByDefault(upn string) bool { return strings.HasPrefix(upn, "breakglass") }
