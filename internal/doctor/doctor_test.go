package doctor

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

func simConfig(t *testing.T, sim *m365sim.Tenant) Config {
	t.Helper()
	info := sim.Info()
	c := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL, HTTPClient: sim.HTTPClient()}
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Credential: cred, GraphScope: c.GraphScope(), ManageScope: c.ManageScope(), GraphURL: info.GraphURL, HTTPClient: sim.HTTPClient()}
}

func TestDoctorAgainstEmulator(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rep, err := Check(ctx, simConfig(t, sim))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Err() != nil {
		t.Fatalf("default app should hold everything: %v", rep.Err())
	}

	// Take one permission away: doctor names it, for exactly the parts that need it.
	info := sim.Info()
	roles := slices.DeleteFunc(m365sim.ResponderRoles(), func(r string) bool { return r == "MailboxSettings.ReadWrite" || r == "ActivityFeed.Read" })
	sim.SetRoles(info.ClientID, roles)
	cfg := simConfig(t, sim) // a fresh credential: no cached token
	rep, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, row := range rep.Rows {
		if !row.OK {
			failed = append(failed, row.Name+"="+strings.Join(row.Missing, "+"))
		}
	}
	want := []string{"audit=ActivityFeed.Read", "delete_forward_rules=MailboxSettings.ReadWrite", "disable_forward_rules=MailboxSettings.ReadWrite",
		"enable_forward_rules=MailboxSettings.ReadWrite", "restore_forward_rules=MailboxSettings.ReadWrite"}
	if strings.Join(failed, ",") != strings.Join(want, ",") {
		t.Fatalf("failed %v, want %v", failed, want)
	}
	e := rep.Err()
	if e == nil || !strings.Contains(e.Error(), "action delete_forward_rules: missing MailboxSettings.ReadWrite") || !strings.Contains(e.Error(), "feed audit: missing ActivityFeed.Read") {
		t.Fatalf("error %v", e)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "MISSING") || strings.Contains(out.String(), info.ClientSecret) {
		t.Fatalf("table:\n%s", out.String())
	}

	// Only what is configured is checked; unknown names are reported.
	cfg.Feeds, cfg.Actions, cfg.SkipGuard = []string{"signin"}, []string{"revoke_sessions", "teleport_user"}, true
	rep, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 3 || rep.Rows[2].Name != "teleport_user" || rep.OK() {
		t.Fatalf("%+v", rep.Rows)
	}
	if _, ok := rep.Roles[Manage]; ok {
		t.Error("asked for a management token nobody needs")
	}
}

func TestDoctorBadSecret(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	info := sim.Info()
	c := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: "wrong-secret-value",
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL, HTTPClient: sim.HTTPClient(), GraphMaxRetries: -1}
	cred, err := c.TokenCredential()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Check(ctx, Config{Credential: cred, GraphScope: c.GraphScope(), ManageScope: c.ManageScope(), Actions: []string{"disable_user"}, Feeds: []string{}, SkipGuard: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Rows[0].Problem == "" || strings.Contains(rep.Err().Error(), "wrong-secret-value") {
		t.Fatalf("%+v", rep.Rows)
	}
}

func TestRolesClaim(t *testing.T) {
	if _, err := RolesClaim("opaque"); err == nil {
		t.Fatal("opaque token accepted")
	}
	r, err := RolesClaim("x.eyJyb2xlcyI6WyJBIiwiQiJdfQ.y") // {"roles":["A","B"]}
	if err != nil || strings.Join(r, ",") != "A,B" {
		t.Fatal(r, err)
	}
}

// Doctor runs in the CLI: it must not pull in the Graph SDK.
func TestNoGraphSDKDependency(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	for _, pkg := range []string{"doctor", "analyst", "approval", "ops"} {
		out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", "github.com/responder-sec/responder/internal/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/microsoftgraph/") || strings.HasPrefix(dep, "github.com/microsoft/kiota") ||
				(pkg != "doctor" && strings.HasPrefix(dep, "github.com/Azure/")) {
				t.Errorf("internal/%s depends on %s", pkg, dep)
			}
		}
	}
}

// TestDoctorExchange: with the Exchange scope, the mailbox forwarding actions
// are checked against the Exchange token's roles.
func TestDoctorExchange(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := simConfig(t, sim)
	cfg.ExchangeScope = "https://outlook.office365.com/.default"
	cfg.Feeds, cfg.Actions, cfg.SkipGuard = []string{}, []string{"remove_mailbox_forwarding", "restore_mailbox_forwarding"}, true
	rep, err := Check(ctx, cfg)
	if err != nil || !rep.OK() || len(rep.Rows) != 2 || rep.Rows[0].Audience != Exchange {
		t.Fatalf("default app: %v %+v", err, rep.Rows)
	}
	info := sim.Info()
	sim.SetRoles(info.ClientID, slices.DeleteFunc(m365sim.ResponderRoles(), func(r string) bool { return r == "Exchange.ManageAsApp" }))
	fresh := simConfig(t, sim)
	fresh.ExchangeScope, fresh.Feeds, fresh.Actions, fresh.SkipGuard = cfg.ExchangeScope, cfg.Feeds, cfg.Actions, true
	rep, err = Check(ctx, fresh)
	if err != nil || rep.OK() || rep.Err() == nil || !strings.Contains(rep.Err().Error(), "action remove_mailbox_forwarding: missing Exchange.ManageAsApp") {
		t.Fatalf("without Exchange.ManageAsApp: %v %v", err, rep.Err())
	}
	// Without the scope, the default table leaves the Exchange actions out.
	rep, err = Check(ctx, simConfig(t, sim))
	if err != nil || slices.ContainsFunc(rep.Rows, func(r Row) bool { return r.Audience == Exchange }) {
		t.Fatalf("no scope: %v %+v", err, rep.Rows)
	}
}
