package main

import (
	"os"
	"testing"

	"github.com/alecthomas/kong"
)

// An empty RESPONDER_ variable (what docker-compose.yml passes for a setting
// left out) is no setting at all: not the current directory for a path flag.
func TestEmptyEnvironmentIsUnset(t *testing.T) {
	t.Setenv("RESPONDER_CLIENT_CERT", "")
	t.Setenv("RESPONDER_ANALYSTS", "")
	t.Setenv("RESPONDER_TENANT_ID", "")
	t.Setenv("RESPONDER_SANDBOX", "true")
	ignoreEmptyEnv()
	if _, ok := os.LookupEnv("RESPONDER_CLIENT_CERT"); ok {
		t.Fatal("an empty RESPONDER_CLIENT_CERT is still set")
	}
	c := newCLI()
	p, err := kong.New(c, kongVars(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"serve"}); err != nil {
		t.Fatal(err)
	}
	if c.Serve.ClientCert != "" || c.Serve.Analysts != "" || c.Serve.TenantID != "" || !c.Serve.Sandbox {
		t.Fatalf("serve settings from an empty environment: cert %q analysts %q tenant %q sandbox %v",
			c.Serve.ClientCert, c.Serve.Analysts, c.Serve.TenantID, c.Serve.Sandbox)
	}
}
