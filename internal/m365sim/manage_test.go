package m365sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365"
)

type manageClient struct {
	t    *testing.T
	tn   *Tenant
	hc   *http.Client
	root string
}

func newManageClient(t *testing.T, tn *Tenant, c m365.Credentials) *manageClient {
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	return &manageClient{t: t, tn: tn, hc: m365.BearerClient(c, cred, c.ManageScope()),
		root: tn.Info().ManageURL + "/" + tn.Info().TenantID + "/activity/feed"}
}

func (m *manageClient) call(method, url string) (*http.Response, []byte) {
	m.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, url, nil)
	resp, err := m.hc.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func afCode(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != status || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("content-type %q", ct)
	}
}

func TestManagementActivityAPI(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: 30 * 24 * time.Hour})
	m := newManageClient(t, tn, creds(tn))
	pub := "&PublisherIdentifier=" + tn.Info().TenantID

	resp, body := m.call("POST", m.root+"/subscriptions/start?contentType=Audit.Exchange"+pub)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"enabled"`) {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	resp, body = m.call("POST", m.root+"/subscriptions/start?contentType=Audit.Exchange"+pub)
	afCode(t, resp, body, 400, "AF20024")
	resp, body = m.call("POST", m.root+"/subscriptions/start?contentType=Audit.Bogus"+pub)
	afCode(t, resp, body, 400, "AF20020")
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.SharePoint"+pub)
	afCode(t, resp, body, 400, "AF20022")
	now := clk.Now()
	q := func(s, e time.Time) string {
		return "&startTime=" + s.Format("2006-01-02T15:04:05") + "&endTime=" + e.Format("2006-01-02T15:04:05")
	}
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange&startTime="+now.Format("2006-01-02T15:04")+pub)
	afCode(t, resp, body, 400, "AF20055")
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange"+q(now.Add(-25*time.Hour), now)+pub)
	afCode(t, resp, body, 400, "AF20055")
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange"+q(now.Add(-8*24*time.Hour), now.Add(-8*24*time.Hour+time.Hour))+pub)
	afCode(t, resp, body, 400, "AF20030")

	// Five attacker rules → five blobs; page size 2 → NextPageUri paging.
	tn.SetContentPageSize(2)
	for i := 0; i < 5; i++ {
		if _, _, err := tn.InjectForwardingRule(ForwardingRule{User: "alice@contoso.com", RuleName: "fw", ForwardTo: []string{"x@evil.example", "y@evil.example"}, ClientIP: "2001:db8::5"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	url := m.root + "/subscriptions/content?contentType=Audit.Exchange" + q(now.Add(-time.Hour), clk.Now().Add(time.Second)) + pub
	var blobs []map[string]string
	pages := 0
	for url != "" {
		resp, body = m.call("GET", url)
		if resp.StatusCode != 200 {
			t.Fatalf("content: %d %s", resp.StatusCode, body)
		}
		var page []map[string]string
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, page...)
		url = resp.Header.Get("NextPageUri")
		pages++
	}
	if len(blobs) != 5 || pages != 3 {
		t.Fatalf("blobs=%d pages=%d", len(blobs), pages)
	}
	resp, body = m.call("GET", blobs[0]["contentUri"])
	if resp.StatusCode != 200 {
		t.Fatalf("blob: %d %s", resp.StatusCode, body)
	}
	var recs []map[string]any
	if err := json.Unmarshal(body, &recs); err != nil || len(recs) != 1 {
		t.Fatalf("blob body %s", body)
	}
	r := recs[0]
	if r["Operation"] != "New-InboxRule" || r["RecordType"] != float64(1) || r["ResultStatus"] != "True" {
		t.Fatalf("record %v", r)
	}
	if ok, _ := regexp.MatchString(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`, r["CreationTime"].(string)); !ok {
		t.Fatalf("CreationTime %v", r["CreationTime"])
	}
	if ok, _ := regexp.MatchString(`^\[2001:db8::5\]:\d+$`, r["ClientIP"].(string)); !ok {
		t.Fatalf("ClientIP %v", r["ClientIP"])
	}
	var fwd string
	for _, p := range r["Parameters"].([]any) {
		pm := p.(map[string]any)
		if pm["Name"] == "ForwardTo" {
			fwd = pm["Value"].(string)
		}
	}
	if fwd != "x@evil.example;y@evil.example" {
		t.Fatalf("ForwardTo = %q", fwd)
	}
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange&nextPage=zzz"+pub)
	afCode(t, resp, body, 400, "AF20031")
	resp, body = m.call("GET", m.root+"/audit/nope$nope")
	afCode(t, resp, body, 404, "AF20050")
	// Blobs expire after 7 days.
	clk.Advance(8 * 24 * time.Hour)
	resp, body = m.call("GET", blobs[0]["contentUri"])
	afCode(t, resp, body, 400, "AF20051")

	resp, _ = m.call("POST", m.root+"/subscriptions/stop?contentType=Audit.Exchange")
	if resp.StatusCode != 200 {
		t.Fatalf("stop: %d", resp.StatusCode)
	}
	resp, body = m.call("GET", m.root+"/subscriptions/content?contentType=Audit.Exchange")
	afCode(t, resp, body, 400, "AF20023")
	resp, body = m.call("GET", m.root+"/subscriptions/list")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"disabled"`) || !strings.Contains(string(body), `"webhook":null`) {
		t.Fatalf("list: %s", body)
	}
	// Tenant mismatch, no permission, Graph token.
	other := strings.Replace(m.root, tn.Info().TenantID, "11111111-2222-3333-4444-555555555555", 1)
	resp, body = m.call("GET", other+"/subscriptions/list")
	afCode(t, resp, body, 403, "AF20010")
	app := tn.AddApp(App{ClientSecret: "x", Roles: []string{"User.Read.All"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, "x"
	m2 := newManageClient(t, tn, c)
	resp, body = m2.call("GET", m2.root+"/subscriptions/list")
	afCode(t, resp, body, 403, "AF10001")
	gtok := bearer(t, tn, "https://graph.microsoft.com/.default")
	r2, _ := do(t, tn, "GET", m.root+"/subscriptions/list", gtok, "")
	if r2.StatusCode != 401 {
		t.Fatalf("graph token on manage: %d", r2.StatusCode)
	}
}

func TestScenarioRecordsAppearAfterDelay(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, AvailabilityDelay: time.Hour, TokenLifetime: 24 * time.Hour})
	m := newManageClient(t, tn, creds(tn))
	for _, ct := range []string{"Audit.Exchange", "Audit.AzureActiveDirectory"} {
		if resp, b := m.call("POST", m.root+"/subscriptions/start?contentType="+ct); resp.StatusCode != 200 {
			t.Fatalf("start %s: %s", ct, b)
		}
	}
	if _, err := tn.InjectMailboxForwarding(MailboxForwarding{User: BobID, ForwardingSmtpAddress: "exfil@evil.example", DeliverToMailboxAndForward: true, ClientIP: "203.0.113.9"}); err != nil {
		t.Fatal(err)
	}
	tn.InjectSignIn(SignIn{UserPrincipalName: "bob@contoso.com", IPAddress: "203.0.113.9", CountryOrRegion: "RU"})
	count := func(ct string) int {
		resp, body := m.call("GET", m.root+"/subscriptions/content?contentType="+ct)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", ct, body)
		}
		var page []any
		_ = json.Unmarshal(body, &page)
		return len(page)
	}
	if count("Audit.Exchange") != 0 || count("Audit.AzureActiveDirectory") != 0 {
		t.Fatal("records visible before the availability delay")
	}
	clk.Advance(time.Hour)
	if count("Audit.Exchange") != 1 || count("Audit.AzureActiveDirectory") != 1 {
		t.Fatal("records not visible after the delay")
	}
	u, _ := tn.User(BobID)
	if u.ForwardingSmtpAddress != "smtp:exfil@evil.example" || !u.DeliverToMailboxAndForward {
		t.Fatalf("forwarding not set: %+v", u)
	}
	var rec map[string]any
	_ = json.Unmarshal(tn.AuditRecords("Audit.Exchange")[0], &rec)
	if rec["Operation"] != "Set-Mailbox" || !strings.Contains(string(tn.AuditRecords("Audit.Exchange")[0]), `"ForwardingSmtpAddress","Value":"smtp:exfil@evil.example"`) {
		t.Fatalf("record %s", tn.AuditRecords("Audit.Exchange")[0])
	}
	var aad map[string]any
	_ = json.Unmarshal(tn.AuditRecords("Audit.AzureActiveDirectory")[0], &aad)
	if aad["Operation"] != "UserLoggedIn" || aad["RecordType"] != float64(15) || aad["ClientIP"] != "203.0.113.9" {
		t.Fatalf("aad record %v", aad)
	}
}
