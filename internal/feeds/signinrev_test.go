package feeds

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365sim"
)

// A sign-in first appears without its MFA outcome; 90 minutes later Entra
// adds it (the emulator's CompleteSignInMFA, on the injected clock). The
// sign-in feed publishes each version exactly once: the first as soon as it
// is listed, the update when the trailing re-scan finds the changed MFA and
// Conditional Access fields, long after the main poll's overlap has passed;
// unchanged re-reads, a restart and a later re-scan publish nothing.
func TestSignInUpdatedWithMFALaterIsPublishedOncePerVersion(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	ctx := context.Background()
	t0 := e.clock.Now()
	s := e.tn.InjectSignIn(m365sim.SignIn{UserPrincipalName: "alice@contoso.com", IPAddress: "203.0.113.9", CreatedDateTime: t0,
		ConditionalAccessStatus: "notApplied"})
	var got []event.Envelope
	cfg := e.graphConfig(t)
	cfg.OnPublished = func(env event.Envelope) { got = append(got, env) }
	p := NewSignInPoller(cfg)
	poll := func(at time.Duration, want int) {
		t.Helper()
		e.clock.Advance(t0.Add(at).Sub(e.clock.Now()))
		n, err := p.Poll(ctx)
		if err != nil || n != want {
			t.Fatalf("poll at +%s: %d events, %v; want %d", at, n, err, want)
		}
	}
	poll(time.Minute, 1)
	if got[0].ID != s.ID {
		t.Fatalf("first version id %q, want the record id %q", got[0].ID, s.ID)
	}
	for _, at := range []time.Duration{5 * time.Minute, 20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 80 * time.Minute} {
		poll(at, 0) // unchanged: main polls and re-scans skip it
	}
	if err := e.tn.CompleteSignInMFA(s.ID, t0.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	poll(89*time.Minute, 0) // not yet visible
	poll(96*time.Minute, 1) // the re-scan (every 15 min) finds the update
	upd := got[1]
	if !strings.HasPrefix(upd.ID, s.ID+":rev-") || upd.Source != event.SourceSignIn || upd.User != "alice@contoso.com" {
		t.Fatalf("update envelope %+v", upd)
	}
	var raw struct {
		ConditionalAccessStatus string `json:"conditionalAccessStatus"`
		Status                  struct {
			AdditionalDetails string `json:"additionalDetails"`
		} `json:"status"`
	}
	if err := json.Unmarshal(upd.Raw, &raw); err != nil || raw.Status.AdditionalDetails != "MFA completed in Azure AD" || raw.ConditionalAccessStatus != "success" {
		t.Fatalf("update raw %s (%v)", upd.Raw, err)
	}
	for _, at := range []time.Duration{100 * time.Minute, 115 * time.Minute, 130 * time.Minute} {
		poll(at, 0)
	}
	// A restarted process (new poller, state in KV) publishes nothing again.
	p = NewSignInPoller(cfg)
	poll(131*time.Minute, 0)
	poll(150*time.Minute, 0)

	ids := eventIDs(t, e.bus.JS)
	if len(ids) != 2 || ids[s.ID] != 1 || ids[upd.ID] != 1 {
		t.Fatalf("EVENTS %v, want each version once", ids)
	}
}

func TestContentFingerprint(t *testing.T) {
	a := json.RawMessage(`{"id":"1","status":{"errorCode":0,"additionalDetails":null},"ipAddress":"203.0.113.9","deviceDetail":{"browser":"Edge"}}`)
	b := json.RawMessage(`{ "ipAddress" : "203.0.113.9", "status":{"additionalDetails":null, "errorCode":0}, "id":"1", "deviceDetail":{"browser":"Firefox"}}`)
	c := json.RawMessage(`{"id":"1","status":{"errorCode":0,"additionalDetails":"MFA completed in Azure AD"},"ipAddress":"203.0.113.9"}`)
	fa, fb, fc := contentFingerprint(a, signInRevisionFields), contentFingerprint(b, signInRevisionFields), contentFingerprint(c, signInRevisionFields)
	if fa == "" || fa != fb {
		t.Errorf("same content, other serialisation or unread fields: %q %q", fa, fb)
	}
	if fa == fc {
		t.Errorf("changed MFA details, same fingerprint %q", fa)
	}
}
