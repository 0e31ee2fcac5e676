package m365sim

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// Starts less than 15 minutes apart are refused with 403 and body code "429"
// naming the wait; listings answer AF20023 for the settle count after a start;
// content created while the subscription was stopped, or before it first
// started, is never listed (by default, as Microsoft does).
func TestManagementSubscriptionStartsAndGaps(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: 30 * 24 * time.Hour})
	tn.SetStartSettle(2)
	m := newManageClient(t, tn, creds(tn))
	pub := "&PublisherIdentifier=" + tn.Info().TenantID
	start := func() (int, string) {
		resp, body := m.call("POST", m.root+"/subscriptions/start?contentType=Audit.Exchange"+pub)
		return resp.StatusCode, string(body)
	}
	rec := func(id string) []json.RawMessage {
		return []json.RawMessage{json.RawMessage(`{"CreationTime":"` + AuditRecordTime(clk.Now()) + `","Id":"` + id + `","Operation":"Set-Mailbox","RecordType":1}`)}
	}
	from, to := clk.Now().Add(-2*time.Hour), clk.Now().Add(2*time.Hour)
	list := func() (int, []byte) {
		resp, body := m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange&startTime="+from.UTC().Format("2006-01-02T15:04:05")+
			"&endTime="+to.UTC().Format("2006-01-02T15:04:05")+pub)
		return resp.StatusCode, body
	}
	before, _ := tn.AddAuditRecords("Audit.Exchange", rec("00000000-0000-4000-8000-000000000001"))
	clk.Advance(time.Minute)
	if code, body := start(); code != 200 {
		t.Fatalf("start: %d %s", code, body)
	}
	clk.Advance(4 * time.Second)
	if err := tn.StopSubscription("Audit.Exchange"); err != nil {
		t.Fatal(err)
	}
	code, body := start()
	if code != 403 || !strings.Contains(body, `"code":"429"`) ||
		!strings.Contains(body, "Too many frequent subscription start requests. Please retry again after 14m 56s") {
		t.Fatalf("second start: %d %s", code, body)
	}
	clk.Advance(15 * time.Minute)
	if code, body := start(); code != 200 {
		t.Fatalf("start after 15 minutes: %d %s", code, body)
	}
	for range 2 { // the settle after that start
		if code, body := list(); code != 400 || !strings.Contains(string(body), "AF20023") {
			t.Fatalf("listing right after the start: %d %s", code, body)
		}
	}
	during, _ := tn.AddAuditRecords("Audit.Exchange", rec("00000000-0000-4000-8000-000000000002"))
	if code, _ := list(); code != 200 {
		t.Fatalf("listing after the settle: %d", code)
	}
	ids := listContent(t, m, "Audit.Exchange", from, to)
	if !slices.Contains(ids, during) || slices.Contains(ids, before) {
		t.Fatalf("listed %v: want %s (while subscribed), not %s (before the first start)", ids, during, before)
	}
	// Stopped for a while: what is created meanwhile is gone for good.
	clk.Advance(time.Minute)
	if err := tn.StopSubscription("Audit.Exchange"); err != nil {
		t.Fatal(err)
	}
	stopped, _ := tn.AddAuditRecords("Audit.Exchange", rec("00000000-0000-4000-8000-000000000003"))
	clk.Advance(15 * time.Minute)
	if code, body := start(); code != 200 {
		t.Fatalf("restart after 15 minutes: %d %s", code, body)
	}
	after, _ := tn.AddAuditRecords("Audit.Exchange", rec("00000000-0000-4000-8000-000000000004"))
	clk.Advance(time.Second)
	list()
	list() // the settle after the restart
	ids = listContent(t, m, "Audit.Exchange", from, to.Add(time.Hour))
	if slices.Contains(ids, stopped) || !slices.Contains(ids, during) || !slices.Contains(ids, after) {
		t.Fatalf("after the restart %v: want %s and %s, not %s (created while stopped)", ids, during, after, stopped)
	}
}
