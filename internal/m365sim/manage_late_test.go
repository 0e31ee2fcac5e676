package m365sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// listContent lists contentType over [from, to) and returns the content ids.
func listContent(t *testing.T, m *manageClient, ct string, from, to time.Time) []string {
	t.Helper()
	resp, body := m.call("GET", m.root+"/subscriptions/content?contentType="+ct+"&startTime="+from.UTC().Format("2006-01-02T15:04:05")+
		"&endTime="+to.UTC().Format("2006-01-02T15:04:05")+"&PublisherIdentifier="+m.tn.Info().TenantID)
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	var page []map[string]string
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range page {
		ids = append(ids, c["contentId"])
	}
	return ids
}

// TestManagementLateContentStopAndGenerated: content listed late keeps its
// past contentCreated and appears only when listed; StopSubscription makes
// listings answer AF20023 until started again; a generated blob serves the
// same records on every read and AuditRecords sees them.
func TestManagementLateContentStopAndGenerated(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: 30 * 24 * time.Hour})
	m := newManageClient(t, tn, creds(tn))
	pub := "&PublisherIdentifier=" + tn.Info().TenantID
	if err := tn.StopSubscription("Audit.General"); err == nil {
		t.Fatal("stopping a subscription that was never started succeeded")
	}
	if resp, body := m.call("POST", m.root+"/subscriptions/start?contentType=Audit.General"+pub); resp.StatusCode != 200 {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}

	clk.Advance(time.Hour) // content created after the start is listed, whatever its delay
	now := clk.Now()
	created := now.Add(-20 * time.Minute)
	rec := json.RawMessage(`{"CreationTime":"` + AuditRecordTime(created) + `","Id":"5b0d2c3e-0000-4000-8000-000000000001","Operation":"FileAccessed","RecordType":6,"Workload":"SharePoint","UserId":"alice@contoso.com"}`)
	id, err := tn.AddLateAuditRecords("Audit.General", []json.RawMessage{rec}, created, now.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	from, to := now.Add(-time.Hour), now.Add(time.Hour)
	for _, got := range listContent(t, m, "Audit.General", from, to) {
		if got == id {
			t.Fatal("late content listed before its time")
		}
	}
	clk.Advance(6 * time.Minute)
	found := false
	for _, got := range listContent(t, m, "Audit.General", from, to) {
		found = found || got == id
	}
	if !found {
		t.Fatal("late content not listed once its time came")
	}
	// It is listed by its contentCreated, 20 minutes ago, not by when it appeared.
	if ids := listContent(t, m, "Audit.General", created.Add(time.Minute), to); strings.Contains(strings.Join(ids, ","), id) {
		t.Fatal("late content listed in a window after its contentCreated")
	}

	gen := func(dst []byte, i int) []byte {
		return fmt.Appendf(dst, `{"CreationTime":"%s","Id":"00000000-0000-4000-8000-%012d","Operation":"Op%d","RecordType":1}`, AuditRecordTime(now), i, i)
	}
	gid, err := tn.AddGeneratedAuditBlob("Audit.General", 3000, gen)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	uri := tn.Info().ManageURL + "/" + tn.Info().TenantID + "/activity/feed/audit/" + gid + "?PublisherIdentifier=" + tn.Info().TenantID
	var first []json.RawMessage
	for range 2 {
		resp, body := m.call("GET", uri)
		var recs []json.RawMessage
		if resp.StatusCode != 200 || json.Unmarshal(body, &recs) != nil || len(recs) != 3000 {
			t.Fatalf("generated blob: %d, %d bytes", resp.StatusCode, len(body))
		}
		if first != nil && string(first[2999]) != string(recs[2999]) {
			t.Fatal("a generated blob changed between reads")
		}
		first = recs
	}
	if !strings.Contains(string(first[7]), `"Op7"`) {
		t.Fatalf("record 7: %s", first[7])
	}
	if n := len(tn.AuditRecords("Audit.General")); n < 3001 {
		t.Fatalf("AuditRecords: %d", n)
	}

	if err := tn.StopSubscription("audit.general"); err != nil {
		t.Fatal(err)
	}
	resp, body := m.call("GET", m.root+"/subscriptions/content?contentType=Audit.General&startTime="+from.UTC().Format("2006-01-02T15:04:05")+
		"&endTime="+to.UTC().Format("2006-01-02T15:04:05")+pub)
	afCode(t, resp, body, 400, "AF20023")
	clk.Advance(15 * time.Minute) // Microsoft refuses starts less than 15 minutes apart (manage_subs.go)
	if resp, body := m.call("POST", m.root+"/subscriptions/start?contentType=Audit.General"+pub); resp.StatusCode != 200 {
		t.Fatalf("restart: %d %s", resp.StatusCode, body)
	}
	if len(listContent(t, m, "Audit.General", from, to)) == 0 {
		t.Fatal("nothing listed after the restart")
	}
}
