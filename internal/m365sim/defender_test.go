package m365sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365"
)

// defClient calls the Defender API with a token for audience scope.
type defClient struct {
	t    *testing.T
	hc   *http.Client
	base string
}

func newDefClient(t *testing.T, tn *Tenant, c m365.Credentials, scope string) *defClient {
	t.Helper()
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	return &defClient{t: t, hc: m365.BearerClient(c, cred, scope), base: tn.Info().DefenderURL}
}

func (d *defClient) do(method, path string, body any) (int, http.Header, map[string]any) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestDefenderTokenAudienceAndRoles(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	c := creds(tn)
	// A Graph token is not a Defender token.
	g := newDefClient(t, tn, c, c.GraphScope())
	if st, _, m := g.do("GET", "/api/machines", nil); st != 401 || errCode(m) != "Unauthorized" {
		t.Fatalf("graph token: %d %v", st, m)
	}
	d := newDefClient(t, tn, c, m365.DefenderScope)
	st, _, m := d.do("GET", "/api/machines", nil)
	if st != 200 {
		t.Fatalf("list machines: %d %v", st, m)
	}
	if n := len(m["value"].([]any)); n < 30 {
		t.Fatalf("seeded %d machines, want a few dozen", n)
	}
	// An app without Machine.Isolate cannot isolate (403 naming it).
	app := tn.AddApp(App{ClientSecret: "s3cret-value-1", Roles: []string{"Machine.Read.All"}})
	c2 := c
	c2.ClientID, c2.ClientSecret = app.ClientID, app.ClientSecret
	d2 := newDefClient(t, tn, c2, m365.DefenderScope)
	dc, _ := tn.MachineByName("desktop-01.contoso.com")
	st, _, m = d2.do("POST", "/api/machines/"+dc.ID+"/isolate", map[string]any{"Comment": "x"})
	if st != 403 || !strings.Contains(m["error"].(map[string]any)["message"].(string), "Machine.Isolate") {
		t.Fatalf("isolate without the role: %d %v", st, m)
	}
	if got, _ := tn.MachineByName(dc.ID); got.Isolated || len(tn.MachineActions()) != 0 {
		t.Fatal("a refused isolation changed the tenant")
	}
}

func TestDefenderIsolationLifecycle(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now})
	tn.SetMachineActionTiming(10*time.Second, 60*time.Second)
	d := newDefClient(t, tn, creds(tn), m365.DefenderScope)
	q := url.Values{"$filter": {"computerDnsName eq 'desktop-02.contoso.com'"}}
	st, _, m := d.do("GET", "/api/machines?"+q.Encode(), nil)
	vals := m["value"].([]any)
	if st != 200 || len(vals) != 1 {
		t.Fatalf("filter: %d %v", st, m)
	}
	id := vals[0].(map[string]any)["id"].(string)
	if st, _, m := d.do("POST", "/api/machines/"+id+"/isolate", map[string]any{"IsolationType": "Full"}); st != 400 {
		t.Fatalf("isolate without Comment: %d %v", st, m)
	}
	st, _, m = d.do("POST", "/api/machines/"+id+"/isolate", map[string]any{"Comment": "test", "IsolationType": "Full"})
	if st != 201 || m["status"] != "Pending" || m["type"] != "Isolate" {
		t.Fatalf("isolate: %d %v", st, m)
	}
	aid := m["id"].(string)
	if st, _, m := d.do("POST", "/api/machines/"+id+"/isolate", map[string]any{"Comment": "again"}); st != 400 || errCode(m) != "ActiveRequestAlreadyExists" {
		t.Fatalf("second isolation while pending: %d %v", st, m)
	}
	for _, step := range []struct {
		adv  time.Duration
		want string
	}{{0, "Pending"}, {10 * time.Second, "InProgress"}, {50 * time.Second, "Succeeded"}} {
		clk.Advance(step.adv)
		if _, _, m := d.do("GET", "/api/machineactions/"+aid, nil); m["status"] != step.want {
			t.Fatalf("after %s: status %v, want %s", step.adv, m["status"], step.want)
		}
	}
	if got, _ := tn.MachineByName(id); !got.Isolated {
		t.Fatal("device not isolated after Succeeded")
	}
	// A failing device: the action ends Failed and the device stays as it was.
	other, _ := tn.MachineByName("desktop-03.contoso.com")
	tn.SetMachineActionOutcome(other.ID, "Failed")
	_, _, m = d.do("POST", "/api/machines/"+other.ID+"/isolate", map[string]any{"Comment": "x"})
	clk.Advance(time.Minute)
	if _, _, m := d.do("GET", "/api/machineactions/"+m["id"].(string), nil); m["status"] != "Failed" {
		t.Fatalf("failing device: %v", m)
	}
	if got, _ := tn.MachineByName(other.ID); got.Isolated {
		t.Fatal("a failed isolation isolated the device")
	}
	// Selective isolation needs Windows 10/11.
	lx, _ := tn.MachineByName("app01.contoso.com")
	if st, _, _ := d.do("POST", "/api/machines/"+lx.ID+"/isolate", map[string]any{"Comment": "x", "IsolationType": "Selective"}); st != 400 {
		t.Fatalf("selective isolation of Linux: %d", st)
	}
}

func TestDefenderIndicators(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now})
	d := newDefClient(t, tn, creds(tn), m365.DefenderScope)
	exp := clk.Now().Add(10 * time.Minute).Format(time.RFC3339)
	ind := func(v, typ string) map[string]any {
		return map[string]any{"indicatorValue": v, "indicatorType": typ, "action": "Block", "title": "t", "description": "d", "expirationTime": exp}
	}
	// CIDR and invalid values: 400, nothing stored.
	for _, bad := range []map[string]any{ind("203.0.113.0/24", "IpAddress"), ind("not-an-ip", "IpAddress"), ind("abc", "FileSha256"), {"indicatorValue": "x.example"}} {
		if st, _, m := d.do("POST", "/api/indicators", bad); st != 400 {
			t.Fatalf("%v: %d %v", bad, st, m)
		}
	}
	if n := len(tn.Indicators()); n != 0 {
		t.Fatalf("refused indicators stored: %d", n)
	}
	st, _, m := d.do("POST", "/api/indicators", ind("203.0.113.7", "IpAddress"))
	if st != 200 || m["id"] == nil {
		t.Fatalf("submit: %d %v", st, m)
	}
	id := m["id"].(string)
	// Submit or update: the same value keeps its id.
	if _, _, m := d.do("POST", "/api/indicators", ind("203.0.113.7", "IpAddress")); m["id"] != id {
		t.Fatalf("update changed the id: %v", m)
	}
	// Import: at most 500; per-indicator failures reported.
	many := make([]map[string]any, 501)
	for i := range many {
		many[i] = ind("example"+string(rune('a'+i%26))+".test", "DomainName")
	}
	if st, _, _ := d.do("POST", "/api/indicators/import", map[string]any{"Indicators": many}); st != 400 {
		t.Fatalf("import of 501: %d", st)
	}
	st, _, m = d.do("POST", "/api/indicators/import", map[string]any{"Indicators": []any{ind("evil.example", "DomainName"), ind("10.0.0.0/8", "IpAddress")}})
	res := m["value"].([]any)
	if st != 200 || len(res) != 2 || res[0].(map[string]any)["isFailed"] != false || res[1].(map[string]any)["isFailed"] != true {
		t.Fatalf("import: %d %v", st, m)
	}
	if n := len(tn.Indicators()); n != 2 {
		t.Fatalf("active indicators %d, want 2", n)
	}
	// Expiry: gone after expirationTime.
	clk.Advance(20 * time.Minute)
	if n := len(tn.Indicators()); n != 0 {
		t.Fatalf("expired indicators still active: %d", n)
	}
	if st, _, _ := d.do("DELETE", "/api/indicators/"+id, nil); st != 404 {
		t.Fatalf("delete of an expired indicator: %d", st)
	}
}

func TestDefenderThrottling(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, Throttling: true})
	tn.SetDefenderLimits(DefenderLimits{PerMinute: Limit{3, time.Minute}, PerHour: Limit{1500, time.Hour}, Import: Limit{1, time.Minute}})
	d := newDefClient(t, tn, creds(tn), m365.DefenderScope)
	for i := 0; i < 3; i++ {
		if st, _, _ := d.do("GET", "/api/machines", nil); st != 200 {
			t.Fatalf("call %d: %d", i, st)
		}
	}
	st, h, m := d.do("GET", "/api/machines", nil)
	if st != 429 || h.Get("Retry-After") != "20" || errCode(m) != "TooManyRequests" {
		t.Fatalf("past the budget: %d %q %v", st, h.Get("Retry-After"), m)
	}
	// Another API has its own budget.
	if st, _, _ := d.do("GET", "/api/indicators", nil); st != 200 {
		t.Fatalf("other API: %d", st)
	}
	clk.Advance(20 * time.Second)
	if st, _, _ := d.do("GET", "/api/machines", nil); st != 200 {
		t.Fatalf("after Retry-After: %d", st)
	}
}

func TestDefenderAdminKnobs(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	hc := tn.HTTPClient()
	put := func(path, body string) int {
		req, _ := http.NewRequest("PUT", tn.URL()+"/_sim/defender/"+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	m, _ := tn.MachineByName("desktop-01.contoso.com")
	if put("outcome", `{"machine_id":"`+m.ID+`","status":"TimeOut"}`) != 204 || put("timing", `{"in_progress_after":0,"done_after":0}`) != 204 {
		t.Fatal("knobs refused")
	}
	d := newDefClient(t, tn, creds(tn), m365.DefenderScope)
	_, _, a := d.do("POST", "/api/machines/"+m.ID+"/isolate", map[string]any{"Comment": "x"})
	if _, _, got := d.do("GET", "/api/machineactions/"+a["id"].(string), nil); got["status"] != "TimeOut" {
		t.Fatalf("status %v", got["status"])
	}
	resp, err := hc.Get(tn.URL() + "/_sim/defender/machines")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("machines: %v", err)
	}
	resp.Body.Close()
}
