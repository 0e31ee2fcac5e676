package m365sim

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// Malformed requests get Microsoft-shaped 4xx answers, never a dropped
// connection (a handler panic) or a 5xx.
func TestMalformedRequestsNeverPanic(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	g := tn.Info().GraphURL
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	mtok := bearer(t, tn, "https://manage.office.com/.default")
	mroot := tn.Info().ManageURL + "/" + tn.Info().TenantID + "/activity/feed"
	bodies := []string{"", "null", "[]", "{", `{"accountEnabled":"no"}`, `{"passwordProfile":7}`, `{"userIds":[1,2]}`, `{"userIds":"x"}`,
		`{"requests":[{"id":"1","method":"GET","url":"http://evil/users"}]}`, `{"requests":[{"id":"1","method":"GET","url":"/users","dependsOn":["9"]}]}`,
		`{"requests":[{"id":"1","method":"GET","url":"/$batch"}]}`, `{"@odata.type":"#microsoft.graph.ipNamedLocation","ipRanges":[{"cidrAddress":null}]}`,
		`{"displayName":"x","state":"on"}`, `{"destinationId":5}`, `{"actions":[]}`, `{"webhook":{"address":"http://x"}}`}
	paths := []string{"/users", "/users/%2F..%2F", "/users/" + AliceID, "/users/" + AliceID + "/revokeSignInSessions",
		"/users/" + AliceID + "/mailFolders/inbox/messageRules", "/users/" + AliceID + "/mailFolders/bogus/messageRules/x",
		"/users/" + AliceID + "/messages/AAMk%2Fa%2Bb%3D/move", "/users/" + AliceID + "/messages?$top=-1&$skip=x",
		"/identityProtection/riskyUsers/dismiss", "/identityProtection/riskDetections?$filter=(((&$skiptoken=zz",
		"/identity/conditionalAccess/namedLocations", "/identity/conditionalAccess/policies", "/$batch",
		"/auditLogs/signIns?$filter=createdDateTime ge banana", "/users?$filter=x/any(a:a eq 1)", "/users?$top=1000000"}
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT"}
	hc := tn.HTTPClient()
	for _, p := range paths {
		for _, m := range methods {
			for _, b := range bodies {
				req, _ := http.NewRequest(m, g+p, strings.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s %s %q: %v", m, p, b, err)
				}
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Fatalf("%s %s %q: %d", m, p, b, resp.StatusCode)
				}
			}
		}
	}
	for _, p := range []string{"/subscriptions/start?contentType=", "/subscriptions/content?contentType=Audit.Exchange&startTime=x&endTime=y",
		"/subscriptions/content?contentType=DLP.All&nextPage=%FF", "/audit/", "/audit/a/b", "/subscriptions/start?contentType=Audit.General"} {
		for _, b := range bodies {
			req, _ := http.NewRequest("POST", mroot+p, strings.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+mtok)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("manage %s %q: %d", p, b, resp.StatusCode)
			}
		}
	}
	// A body that claims gzip but is not.
	req, _ := http.NewRequest("PATCH", g+"/users/"+AliceID, strings.NewReader("not gzip"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad gzip: %v", err)
	}
	resp.Body.Close()
	// A real gzip body is decoded.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(`{"jobTitle":"CFO"}`))
	_ = zw.Close()
	req, _ = http.NewRequest("PATCH", g+"/users/"+AliceID, &zb)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "application/json")
	resp, err = hc.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("gzip: %v %v", err, resp)
	}
	resp.Body.Close()
	if u, _ := tn.User(AliceID); u.JobTitle != "CFO" {
		t.Fatal("gzip body not applied")
	}
	// Token endpoint garbage.
	for _, b := range []string{"", "grant_type=password", "grant_type=client_credentials", "grant_type=client_credentials&client_id=x&client_secret=y&scope=z",
		"grant_type=client_credentials&client_id=" + tn.Info().ClientID + "&client_secret=" + tn.Info().ClientSecret + "&scope=https://graph.microsoft.com/User.Read",
		"grant_type=client_credentials&client_id=" + tn.Info().ClientID + "&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=a.b.c&scope=https://graph.microsoft.com/.default"} {
		req, _ := http.NewRequest("POST", tn.Info().LoginURL+"/"+tn.Info().TenantID+"/oauth2/v2.0/token", strings.NewReader(b))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("token %q: %v %v", b, err, resp)
		}
		resp.Body.Close()
	}
}

func TestCloseStopsEverything(t *testing.T) {
	tn, err := New(Options{Seed: SeedOrg})
	if err != nil {
		t.Fatal(err)
	}
	hc := tn.HTTPClient()
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	// The request is held inside the handler until Close.
	arrived := make(chan struct{})
	tn.AddFault(Fault{PathPrefix: "/v1.0/domains", Hold: make(chan struct{}), Arrived: arrived})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", tn.Info().GraphURL+"/domains", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived // inside the handler, counted in flight
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("request held inside the tenant survived Close")
	}
	if err := tn.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	hc.CloseIdleConnections()
	// Close returns after Serve and every handler: no goroutine of the
	// emulator may be left the moment it returns. (The client's transport
	// goroutines are the client's, and wind down on their own.)
	if left := emulatorGoroutines(); len(left) > 0 {
		t.Fatalf("%d emulator goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// emulatorGoroutines are the stacks of the goroutines running emulator code,
// other than the tests themselves.
func emulatorGoroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "/internal/m365sim.") && !strings.Contains(g, "m365sim.Test") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}
