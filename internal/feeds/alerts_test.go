package feeds

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365sim"
)

// The alerts feed: every alert state is published once with what its evidence
// names; an update (new lastUpdateDateTime) is a new event; re-polls and a
// restarted poller publish nothing new; pages follow @odata.nextLink; the
// checkpoint and status move; a missing permission is a failed poll in the
// status, not a crash.
func TestAlertsFeed(t *testing.T) {
	e := newEnv(t, m365sim.Options{})
	cfg := e.graphConfig(t)
	cfg.PageSize = 2
	var got []event.Envelope
	cfg.OnPublished = func(env event.Envelope) { got = append(got, env) }
	ctx := context.Background()
	ransom := e.tn.InjectAlert(m365sim.AlertSpec{Title: "Ransomware behavior detected in the file system", Category: "Ransomware", Severity: "high",
		DeviceID: "4f1b6f1e0a5c3d2e1f00112233445566778899aa", DeviceName: "ws-0042.contoso.com",
		SHA256: "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec", FileName: "locker.exe"})
	e.tn.InjectAlert(m365sim.AlertSpec{Title: "Email messages containing malicious URL removed after delivery", Category: "InitialAccess",
		ServiceSource: "microsoftDefenderForOffice365", DetectionSource: "microsoftDefenderForOffice365", Mailbox: "alice@contoso.com",
		Sender: "billing@evil.example", URL: "https://login.evil.example/x", InternetMessageID: "<a1@evil.example>", NetworkMessageID: "42220a17-4fae-42b7-e485-08dd51827298"})
	e.tn.InjectAlert(m365sim.AlertSpec{Title: "Connection to a malicious IP", Category: "CommandAndControl", DeviceID: "5f1b6f1e0a5c3d2e1f00112233445566778899aa", IP: "198.51.100.23"})
	e.clock.Advance(time.Second)
	p := NewAlertPoller(cfg)
	if n, err := p.Poll(ctx); err != nil || n != 3 {
		t.Fatalf("first poll: %d, %v", n, err)
	}
	byKind := map[string]event.Envelope{}
	for _, env := range got {
		byKind[env.Kind] = env
	}
	if r := byKind["Ransomware"]; r.Source != event.SourceAlert || r.AlertField("device") != "4f1b6f1e0a5c3d2e1f00112233445566778899aa" ||
		r.AlertField("sha256") != "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec" {
		t.Errorf("ransomware event: %+v %+v", r, r.Alert)
	}
	if m := byKind["InitialAccess"]; m.AlertField("sender") != "billing@evil.example" || m.AlertField("message_id") != "<a1@evil.example>" ||
		m.AlertField("url") != "https://login.evil.example/x" || m.Mailbox != "alice@contoso.com" {
		t.Errorf("phishing event: %+v %+v", m, m.Alert)
	}
	if c := byKind["CommandAndControl"]; c.IP != "198.51.100.23" {
		t.Errorf("C2 event: %+v", c)
	}
	// What the stream stores carries the evidence summary (the matcher reads it
	// from there).
	stream, err := e.bus.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, bus.EventSubject(e.tn.Info().TenantID, string(event.SourceAlert), "Ransomware"))
	if err != nil {
		t.Fatal(err)
	}
	var stored event.Envelope
	if err := json.Unmarshal(msg.Data, &stored); err != nil || stored.AlertField("device") != "4f1b6f1e0a5c3d2e1f00112233445566778899aa" || stored.Alert.Title == "" {
		t.Errorf("stored event: %v %+v", err, stored.Alert)
	}
	next := 0
	for _, w := range e.tn.WireLog() {
		if strings.Contains(w.Path, "security/alerts_v2") {
			if strings.Contains(w.Query, "skip=") {
				next++
			}
			if !strings.Contains(w.Query, "lastUpdateDateTime%20ge%20") {
				t.Errorf("alerts request without a lastUpdateDateTime filter: %s", w.Query)
			}
		}
	}
	if next != 1 {
		t.Errorf("%d requests followed @odata.nextLink for 3 alerts at $top=2, want 1", next)
	}

	// Nothing changed: nothing new.
	e.clock.Advance(time.Minute)
	if n, err := p.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("re-poll: %d, %v", n, err)
	}
	// The alert is resolved: its new state is a new event.
	e.clock.Advance(time.Minute)
	e.tn.UpdateAlert(ransom, "resolved")
	e.clock.Advance(time.Second)
	if n, err := p.Poll(ctx); err != nil || n != 1 {
		t.Fatalf("poll after the update: %d, %v", n, err)
	}
	if last := got[len(got)-1]; last.Alert.Status != "resolved" || !strings.HasPrefix(last.ID, ransom+":") {
		t.Errorf("update event: %+v", last)
	}
	// A restarted poller re-reads the overlap; the stream deduplicates.
	if n, err := NewAlertPoller(cfg).Poll(ctx); err != nil || n != 0 {
		t.Fatalf("restarted poll: %d, %v", n, err)
	}
	if ids := eventIDs(t, e.bus.JS); len(ids) != 4 {
		t.Errorf("EVENTS holds %d events, want 4: %v", len(ids), ids)
	}
	st, err := Status(ctx, e.kv, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var line *StatusLine
	for i := range st {
		if st[i].Feed == FeedAlerts {
			line = &st[i]
		}
	}
	if line == nil || line.Events != 4 || line.LastError != "" || line.Cursor.IsZero() || line.LastSuccess.IsZero() {
		t.Fatalf("status: %+v", line)
	}

	// Without SecurityAlert.Read.All: a failed poll, named in the status.
	var roles []string
	for _, r := range m365sim.ResponderRoles() {
		if r != "SecurityAlert.Read.All" {
			roles = append(roles, r)
		}
	}
	e.tn.SetRoles(e.tn.Info().ClientID, roles)
	cfg2 := e.graphConfig(t) // a new token without the role
	if _, err := NewAlertPoller(cfg2).Poll(ctx); err == nil {
		t.Fatal("poll without SecurityAlert.Read.All succeeded")
	}
	st, _ = Status(ctx, e.kv, e.clock.Now)
	for _, l := range st {
		if l.Feed == FeedAlerts && (l.LastError == "" || l.Events != 4) {
			t.Errorf("status after a refused poll: %+v", l)
		}
	}
}
