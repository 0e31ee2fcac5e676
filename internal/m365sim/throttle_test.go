package m365sim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestThrottlingBudgets(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: 24 * time.Hour, Throttling: true})
	g := tn.Info().GraphURL
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	get := func(path string) (*http.Response, string) { return do(t, tn, "GET", g+path, tok, "") }

	// Identity Protection + CA: 1 request/s per tenant, 429 without Retry-After.
	if r, _ := get("/identityProtection/riskDetections"); r.StatusCode != 200 {
		t.Fatalf("first: %d", r.StatusCode)
	}
	r, b := get("/identity/conditionalAccess/namedLocations")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "" || !strings.Contains(b, `"TooManyRequests"`) {
		t.Fatalf("IdP/CA burst: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), b)
	}
	clk.Advance(time.Second)
	if r, _ := get("/identityProtection/riskyUsers"); r.StatusCode != 200 {
		t.Fatalf("after 1s: %d", r.StatusCode)
	}

	// Sign-in reports: 5 per 10 s, refilled at 0.5/s.
	for i := 0; i < 5; i++ {
		if r, _ := get("/auditLogs/signIns"); r.StatusCode != 200 {
			t.Fatalf("signIns %d: %d", i, r.StatusCode)
		}
	}
	r, _ = get("/auditLogs/signIns")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("reports burst: %d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	clk.Advance(2 * time.Second)
	if r, _ := get("/auditLogs/signIns"); r.StatusCode != 200 {
		t.Fatalf("reports refill: %d", r.StatusCode)
	}

	// Entra resource units: GET users costs 2; capacity 10 per 10 s.
	l := DefaultLimits()
	l.EntraResourceUnits = Limit{Capacity: 10, Per: 10 * time.Second}
	l.EntraWrites = Limit{Capacity: 2, Per: 150 * time.Second}
	tn.SetLimits(l)
	for i := 0; i < 5; i++ {
		r, _ := get("/users/" + AliceID)
		if r.StatusCode != 200 || r.Header.Get("x-ms-resource-unit") != "2" {
			t.Fatalf("users %d: %d ru=%q", i, r.StatusCode, r.Header.Get("x-ms-resource-unit"))
		}
	}
	r, b = get("/users/" + AliceID)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" || r.Header.Get("x-ms-throttle-information") != "ResourceUnitLimitExceeded" ||
		!strings.HasPrefix(r.Header.Get("x-ms-throttle-scope"), "Tenant_Application/ReadWrite/") || !strings.Contains(b, "TooManyRequests") {
		t.Fatalf("RU burst: %d %v %s", r.StatusCode, r.Header, b)
	}
	clk.Advance(time.Second) // 1 RU back: not enough for a users GET…
	if r, _ := get("/users/" + AliceID); r.StatusCode != 429 {
		t.Fatalf("after 1s: %d", r.StatusCode)
	}
	if r, _ := get("/users/" + AliceID + "?$select=id"); r.StatusCode != 200 { // …but $select costs 1
		t.Fatalf("$select after 1s: %d", r.StatusCode)
	}
	clk.Advance(10 * time.Second)
	// Writes: 2 per 150 s.
	for i := 0; i < 2; i++ {
		if r, b := do(t, tn, "PATCH", g+"/users/"+BobID, tok, `{"jobTitle":"x"}`); r.StatusCode != 204 {
			t.Fatalf("write %d: %d %s", i, r.StatusCode, b)
		}
	}
	r, _ = do(t, tn, "PATCH", g+"/users/"+BobID, tok, `{"jobTitle":"y"}`)
	if r.StatusCode != 429 || r.Header.Get("x-ms-throttle-information") != "WriteLimitExceeded" || r.Header.Get("Retry-After") != "75" {
		t.Fatalf("write burst: %d %v", r.StatusCode, r.Header)
	}

	// Outlook: 3 requests per 10 min per mailbox (lowered), separate per mailbox.
	l.OutlookRequests = Limit{Capacity: 3, Per: 10 * time.Minute}
	tn.SetLimits(l)
	for i := 0; i < 3; i++ {
		if r, _ := get("/users/" + AliceID + "/messages"); r.StatusCode != 200 {
			t.Fatalf("outlook %d: %d", i, r.StatusCode)
		}
	}
	r, b = get("/users/" + AliceID + "/messages")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "200" || !strings.Contains(b, "ApplicationThrottled") {
		t.Fatalf("outlook burst: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), b)
	}
	if r, _ := get("/users/" + BobID + "/messages"); r.StatusCode != 200 {
		t.Fatalf("other mailbox: %d", r.StatusCode)
	}
	clk.Advance(200 * time.Second)
	if r, _ := get("/users/" + AliceID + "/messages"); r.StatusCode != 200 {
		t.Fatalf("outlook refill: %d", r.StatusCode)
	}

	// Management Activity API: 2 per minute (lowered) → AF429 as 403.
	l.ManagementActivity = Limit{Capacity: 2, Per: time.Minute}
	tn.SetLimits(l)
	m := newManageClient(t, tn, creds(tn))
	for i := 0; i < 2; i++ {
		if r, _ := m.call("GET", m.root+"/subscriptions/list?PublisherIdentifier="+tn.Info().TenantID); r.StatusCode != 200 {
			t.Fatalf("manage %d: %d", i, r.StatusCode)
		}
	}
	r, mb := m.call("GET", m.root+"/subscriptions/list?PublisherIdentifier="+tn.Info().TenantID)
	afCode(t, r, mb, 403, "AF429")
	if !strings.Contains(string(mb), "PublisherId="+tn.Info().TenantID) {
		t.Fatalf("AF429 message %s", mb)
	}
	// Another publisher has its own quota.
	if r, _ := m.call("GET", m.root+"/subscriptions/list?PublisherIdentifier=22222222-2222-2222-2222-222222222222"); r.StatusCode != 200 {
		t.Fatalf("other publisher: %d", r.StatusCode)
	}
	clk.Advance(30 * time.Second)
	if r, _ := m.call("GET", m.root+"/subscriptions/list?PublisherIdentifier="+tn.Info().TenantID); r.StatusCode != 200 {
		t.Fatalf("manage refill: %d", r.StatusCode)
	}

	tn.SetThrottling(false)
	for i := 0; i < 5; i++ {
		if r, _ := get("/identityProtection/riskDetections"); r.StatusCode != 200 {
			t.Fatalf("throttling off: %d", r.StatusCode)
		}
	}
}

func TestOutlookConcurrencyAndWireLog(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall, Throttling: true})
	g := tn.Info().GraphURL
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	// Hold every request inside the tenant until all six are there: they
	// overlap by construction, not by a latency guessed long enough.
	release, arrived := make(chan struct{}), make(chan struct{})
	tn.AddFault(Fault{PathPrefix: "/v1.0/users/" + AliceID + "/messages", Hold: release, Arrived: arrived})
	var wg sync.WaitGroup
	codes := make([]int, 6)
	start := make(chan struct{})
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("GET", g+"/users/"+AliceID+"/messages", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := tn.HTTPClient().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}(i)
	}
	close(start)
	for range codes {
		<-arrived
	}
	close(release)
	wg.Wait()
	var ok, throttled int
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 429:
			throttled++
		}
	}
	if ok != 4 || throttled != 2 {
		t.Fatalf("codes = %v", codes)
	}
	if n := tn.MaxInFlight("alice@contoso.com"); n != 6 {
		t.Fatalf("max in flight = %d", n)
	}
	for _, e := range tn.WireLog() {
		if e.Mailbox == AliceID && e.Status == 429 && e.InFlightMailbox <= 4 {
			t.Fatalf("429 at in-flight %d", e.InFlightMailbox)
		}
	}
}

func TestFaultsLatencyResetRetryAfter(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	g := tn.Info().GraphURL
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")

	// Connection reset.
	rm := tn.AddFault(Fault{PathPrefix: "/v1.0/users", Reset: true, Count: 1})
	req, _ := http.NewRequest("GET", g+"/users", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := tn.HTTPClient().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("reset fault: got status %d", resp.StatusCode)
	}
	rm()
	// Count: exactly one 503 then normal.
	tn.AddFault(Fault{Status: 503, Count: 1})
	r, b := do(t, tn, "GET", g+"/users", tok, "")
	if r.StatusCode != 503 || !strings.Contains(b, "serviceNotAvailable") || r.Header.Get("request-id") == "" {
		t.Fatalf("503: %d %s", r.StatusCode, b)
	}
	if r, _ := do(t, tn, "GET", g+"/users", tok, ""); r.StatusCode != 200 {
		t.Fatalf("after count: %d", r.StatusCode)
	}
	// 429 with and without Retry-After.
	rm = tn.AddFault(Fault{Status: 429, RetryAfter: "3"})
	r, b = do(t, tn, "GET", g+"/users", tok, "")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "3" || !strings.Contains(b, `"code":"TooManyRequests"`) {
		t.Fatalf("429: %d %s", r.StatusCode, b)
	}
	rm()
	rm = tn.AddFault(Fault{Status: 429, PathPrefix: "/api/"})
	m := newManageClient(t, tn, creds(tn))
	r, mb := m.call("GET", m.root+"/subscriptions/list")
	if r.Header.Get("Retry-After") != "" {
		t.Fatal("unexpected Retry-After")
	}
	afCode(t, r, mb, 429, "AF429")
	rm()
	// Latency honours the caller's context.
	tn.AddFault(Fault{PathPrefix: "/v1.0/domains", Latency: 5 * time.Second})
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(cctx, "GET", g+"/domains", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	_, err := tn.HTTPClient().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("latency: %v", err)
	}
	// Malformed input gets Microsoft's answers, never a panic.
	r, b = do(t, tn, "PATCH", g+"/users/"+AliceID, tok, `{"accountEnabled":`)
	if r.StatusCode != 400 || !strings.Contains(b, `"code":"BadRequest"`) {
		t.Fatalf("bad JSON: %d %s", r.StatusCode, b)
	}
	r, b = do(t, tn, "GET", g+"/users?$filter=startswith(displayName,'unterminated", tok, "")
	if r.StatusCode != 400 {
		t.Fatalf("bad filter: %d %s", r.StatusCode, b)
	}
	r, b = do(t, tn, "GET", g+"/nosuchthing", tok, "")
	if r.StatusCode != 400 || !strings.Contains(b, "Resource not found for the segment 'nosuchthing'") {
		t.Fatalf("unknown segment: %d %s", r.StatusCode, b)
	}
	r, b = do(t, tn, "DELETE", g+"/users", tok, "")
	if r.StatusCode != 405 {
		t.Fatalf("method: %d %s", r.StatusCode, b)
	}
}
