package m365sim

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"github.com/responder-sec/responder/internal/m365"
)

func TestRunStandaloneSeedOrg(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := RunStandalone(ctx, Options{}, pw)
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var raw map[string]string
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	for _, k := range []string{"tenant_id", "client_id", "client_secret", "login_url", "graph_url", "manage_url", "admin_url", "ca_file"} {
		if raw[k] == "" {
			t.Fatalf("missing %s in %s", k, line)
		}
	}
	if !strings.HasSuffix(raw["graph_url"], "/v1.0") || !strings.HasSuffix(raw["manage_url"], "/api/v1.0") || !strings.HasPrefix(raw["login_url"], "https://127.0.0.1:") {
		t.Fatalf("urls %s", line)
	}
	pem, err := os.ReadFile(raw["ca_file"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file is not PEM")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	c := m365.Credentials{TenantID: raw["tenant_id"], ClientID: raw["client_id"], ClientSecret: raw["client_secret"],
		LoginURL: raw["login_url"], GraphURL: raw["graph_url"], ManageURL: raw["manage_url"], HTTPClient: hc, GraphMaxRetries: -1}
	gc := graphClient(t, c)
	top := int32(999)
	us, err := gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: &top}})
	if err != nil || len(us.GetValue()) < 30 {
		t.Fatalf("users: %v", err)
	}
	si, err := gc.AuditLogs().SignIns().Get(ctx, nil)
	if err != nil || len(si.GetValue()) < 100 {
		t.Fatalf("sign-ins: %v", err)
	}
	rd, err := gc.IdentityProtection().RiskDetections().Get(ctx, nil)
	if err != nil || len(rd.GetValue()) < 3 {
		t.Fatalf("risk detections: %v", err)
	}
	roles, err := gc.DirectoryRoles().Get(ctx, nil)
	if err != nil || len(roles.GetValue()) < 4 {
		t.Fatalf("roles: %v", err)
	}
	cred, _ := c.TokenCredential()
	mc := &manageClient{t: t, hc: m365.BearerClient(c, cred, c.ManageScope()), root: raw["manage_url"] + "/" + raw["tenant_id"] + "/activity/feed"}
	for _, ct := range contentTypes {
		// The seeded organisation's subscriptions run since before its background day.
		if r, b := mc.call("POST", mc.root+"/subscriptions/start?contentType="+ct); r.StatusCode != 400 || !strings.Contains(string(b), "AF20024") {
			t.Fatalf("start %s: %d %s", ct, r.StatusCode, b)
		}
		r, b := mc.call("GET", mc.root+"/subscriptions/content?contentType="+ct)
		var page []map[string]string
		_ = json.Unmarshal(b, &page)
		if r.StatusCode != 200 || len(page) == 0 {
			t.Fatalf("%s: no background content (%d %s)", ct, r.StatusCode, b)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunStandalone: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunStandalone did not stop")
	}
	if _, err := os.Stat(raw["ca_file"]); !os.IsNotExist(err) {
		t.Fatalf("CA file left behind: %v", err)
	}
}

func TestAdminHTTPAPI(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	admin := tn.Info().AdminURL
	r, b := do(t, tn, "POST", admin+"/inject/riskDetection", "", `{"userPrincipalName":"bob@contoso.com","riskEventType":"anonymizedIPAddress"}`)
	if r.StatusCode != 201 || !strings.Contains(b, BobID) {
		t.Fatalf("inject: %d %s", r.StatusCode, b)
	}
	r, b = do(t, tn, "POST", admin+"/inject/forwardingRule", "", `{"user":"alice@contoso.com","forwardTo":["x@evil.example"]}`)
	if r.StatusCode != 201 || len(tn.MessageRules(AliceID)) != 1 {
		t.Fatalf("forwarding rule: %d %s", r.StatusCode, b)
	}
	r, b = do(t, tn, "POST", admin+"/faults", "", `{"method":"GET","path_prefix":"/v1.0/domains","status":503,"count":1}`)
	if r.StatusCode != 201 {
		t.Fatalf("fault: %d %s", r.StatusCode, b)
	}
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	if r, _ := do(t, tn, "GET", tn.Info().GraphURL+"/domains", tok, ""); r.StatusCode != 503 {
		t.Fatalf("fault not applied: %d", r.StatusCode)
	}
	r, b = do(t, tn, "GET", admin+"/wirelog", "", "")
	var wl []WireEntry
	if err := json.Unmarshal([]byte(b), &wl); err != nil || len(wl) == 0 || wl[len(wl)-1].Status != 503 {
		t.Fatalf("wirelog: %d %v", r.StatusCode, err)
	}
	if r, _ := do(t, tn, "POST", admin+"/users", "", `{"userPrincipalName":"dave@contoso.com"}`); r.StatusCode != 201 {
		t.Fatal("add user")
	}
	if _, ok := tn.User("DAVE@contoso.com"); !ok {
		t.Fatal("user not added")
	}
	if r, _ := do(t, tn, "POST", admin+"/nope", "", `{}`); r.StatusCode != 404 {
		t.Fatal("unknown admin route")
	}
}
