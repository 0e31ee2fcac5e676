package feeds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// TestManagementTokenStaysOnItsHost plays an attacker who can shape what the
// Management Activity API client is told to fetch: a content listing whose
// contentUri names another host, and a 302 from the API to another host. The
// bearer token must reach neither (the attacker's server sees no request at
// all), nothing is published from there, and once the API behaves the same
// content is read from the API itself.
func TestManagementTokenStaysOnItsHost(t *testing.T) {
	var mu sync.Mutex
	var seen []string // Authorization headers the attacker received
	att := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		// What a thief would answer: a blob of forged records.
		_, _ = w.Write([]byte(`[]`))
	}))
	defer att.Close()
	attacker := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}

	e := newEnv(t, m365sim.Options{})
	in := e.tn.Info()
	ct := "Audit.Exchange"
	e.subscribed(t, ct)
	e.clock.Advance(2 * time.Minute)
	var recs []json.RawMessage
	for i := range 3 {
		recs = append(recs, auditRecord(in.TenantID, fmt.Sprintf("00000000-0000-4000-8000-%012x", i), e.clock.Now().Add(-time.Minute), "Set-Mailbox"))
	}
	if _, err := e.tn.AddAuditRecords(ct, recs); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := e.manageConfig()
	cfg.ContentTypes = []string{ct}
	cfg.MaxAttempts = 2
	p := NewManagementPoller(cfg)

	// 1. A listing that sends the client elsewhere.
	e.tn.SetContentURIBase(att.URL)
	err := p.PollOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "ForeignHost") {
		t.Fatalf("a contentUri on another host: %v", err)
	}
	if got := attacker(); len(got) != 0 {
		t.Fatalf("the attacker's host was reached: %q", got)
	}
	e.tn.SetContentURIBase("")

	// 2. The API redirects the blob fetch to another host.
	blobPath := "/api/v1.0/" + in.TenantID + "/activity/feed/audit/"
	remove := e.tn.AddFault(m365sim.Fault{PathPrefix: blobPath, Status: http.StatusFound, Location: att.URL + "/steal"})
	err = p.PollOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "ForeignHost") {
		t.Fatalf("a redirect to another host: %v", err)
	}
	if got := attacker(); len(got) != 0 {
		t.Fatalf("the redirect was followed: %q", got)
	}
	if n := len(eventIDs(t, e.bus.JS)); n != 0 {
		t.Fatalf("%d events published while the API misbehaved", n)
	}
	remove()

	// 3. The API behaves: the content is read from it, exactly once.
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(eventIDs(t, e.bus.JS)); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
	if got := attacker(); len(got) != 0 {
		t.Fatalf("the attacker's host was reached: %q", got)
	}
}

func TestSameHost(t *testing.T) {
	api, _ := url.Parse("https://manage.office.com")
	for u, want := range map[string]bool{
		"https://manage.office.com/api/v1.0/t/activity/feed/audit/x": true,
		"https://MANAGE.office.com/api":                              true,
		"http://manage.office.com/api":                               false,
		"https://manage.office.com:8443/api":                         false,
		"https://manage.office.com.evil.example/api":                 false,
		"https://evil.example/api":                                   false,
	} {
		p, _ := url.Parse(u)
		if got := sameHost(p, api); got != want {
			t.Errorf("%s: %v, want %v", u, got, want)
		}
	}
}
