package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RESPONDER_") {
			t.Setenv(strings.SplitN(kv, "=", 2)[0], "")
		}
	}
}

func TestServeNamesTheMissingSetting(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve", "--data-dir", t.TempDir()}, nil, "missing tenant id"},
		{[]string{"serve", "--data-dir", t.TempDir()}, map[string]string{"RESPONDER_TENANT_ID": "t"}, "missing client id"},
		{[]string{"serve", "--data-dir", t.TempDir(), "--tenant-id", "t", "--client-id", "c"}, nil, "missing credential"},
		{[]string{"serve", "--data-dir", t.TempDir(), "--tenant-id", "t", "--client-id", "c", "--client-secret", "s3cr3t-value", "--client-cert", "/nonexistent.pem"}, nil, "RESPONDER_CLIENT_CERT"},
		{[]string{"serve", "--sandbox", "--data-dir", t.TempDir(), "--client-secret", "s3cr3t-value"}, nil, "contradictory settings"},
		{[]string{"serve", "--data-dir", t.TempDir(), "--tenant-id", "t", "--client-id", "c", "--client-secret", "s3cr3t-value", "--graph-url", "http://graph.example"}, nil, "must be an absolute https URL"},
	}
	for _, c := range cases {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error naming %q", c.args, code, errb.String(), c.want)
		}
		if strings.Contains(errb.String(), "s3cr3t-value") {
			t.Errorf("%v: the client secret appears in the error", c.args)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

// TestActAgainstRunningEngine runs `responder act` against an engine that serve
// would start, found through the local context file.
func TestActAgainstRunningEngine(t *testing.T) {
	clearEnv(t)
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	info := sim.Info()
	dataDir := t.TempDir()
	eng, err := engine.New(context.Background(), engine.Config{
		Bus: bus.Config{StoreDir: filepath.Join(dataDir, "nats"), Port: -1},
		Credentials: m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
			LoginURL: info.LoginURL, GraphURL: info.GraphURL, HTTPClient: sim.HTTPClient()},
		DataDir:      dataDir,
		PlaybookDir:  "../../playbooks",
		Feeds:        []string{engine.FeedRiskDetections},
		RiskInterval: time.Hour,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := writeContext(dataDir, localContext{NatsURL: eng.Bus().ClientURL(), TenantID: info.TenantID}); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	code := run([]string{"act", "disable-user", "--data-dir", dataDir, "--user", "bob@contoso.com", "--reason", "phished", "--ticket", "INC-42", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("act exit %d: %s %s", code, out.String(), errb.String())
	}
	var o map[string]any
	if err := json.Unmarshal(out.Bytes(), &o); err != nil {
		t.Fatalf("act --json printed %q: %v", out.String(), err)
	}
	for _, k := range []string{"request_id", "action", "target", "outcome"} {
		if _, ok := o[k]; !ok {
			t.Errorf("act --json lacks %q: %s", k, out.String())
		}
	}
	if o["outcome"] != "succeeded" || o["action"] != "disable_user" {
		t.Errorf("outcome %v", o)
	}
	if u, _ := sim.User("bob@contoso.com"); u.AccountEnabled {
		t.Error("bob still enabled after act")
	}

	// The audit trail names the analyst, the reason and the ticket.
	out.Reset()
	errb.Reset()
	if code := run([]string{"audit", "list", "--data-dir", dataDir, "--json", "--request", o["request_id"].(string)}, &out, &errb); code != 0 {
		t.Fatalf("audit list exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"ticket":"INC-42"`) || !strings.Contains(lines[1], `"name":"local-admin"`) {
		t.Errorf("audit list for the request = %q", out.String())
	}
	out.Reset()
	if code := run([]string{"audit", "verify", "--data-dir", dataDir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "verified") {
		t.Errorf("audit verify exit %d: %s %s", code, out.String(), errb.String())
	}

	// A protected-looking failure: an unknown user gets Microsoft's 404 code and a non-zero exit.
	out.Reset()
	errb.Reset()
	code = run([]string{"act", "revoke-sessions", "--data-dir", dataDir, "--user", "nobody@contoso.com", "--reason", "x", "--json"}, &out, &errb)
	if code == 0 || !strings.Contains(out.String(), `"outcome":"failed"`) || !strings.Contains(out.String(), "Request_ResourceNotFound") {
		t.Errorf("act on unknown user: exit %d, %s %s", code, out.String(), errb.String())
	}
}
