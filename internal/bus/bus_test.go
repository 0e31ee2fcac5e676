package bus

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestTokenKeepsSubjectsWellFormed(t *testing.T) {
	cases := map[string]string{
		"":                    "_",
		"New-InboxRule":       "New-InboxRule",
		"Add member to role.": "Add_member_to_role_",
		"a.b*c>d":             "a_b_c_d",
		"tab\there":           "tab_here",
	}
	for in, want := range cases {
		if got := Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
	if s := EventSubject("t1", "audit", "Add member to role."); s != "m365.t1.event.audit.Add_member_to_role_" {
		t.Errorf("EventSubject = %q", s)
	}
}

func TestEmbeddedServerStreamsAndAuditImmutability(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("embedded server not on loopback: %s", b.ClientURL())
	}
	for _, name := range []string{StreamEvents, StreamActions, StreamAudit} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if name == StreamActions && s.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
			t.Errorf("ACTIONS is not a work queue")
		}
	}
	ack, err := b.JS.Publish(ctx, AuditSubject("t1", "succeeded", "disable_user"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	audit, _ := b.JS.Stream(ctx, StreamAudit)
	if err := audit.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("AUDIT allowed a delete")
	}
	if err := audit.Purge(ctx); err == nil {
		t.Error("AUDIT allowed a purge")
	}
	if _, err := b.State(ctx); err != nil {
		t.Errorf("state bucket: %v", err)
	}
	// Ensure is idempotent (several processes call it).
	if err := Ensure(ctx, b.JS, Config{}); err != nil {
		t.Errorf("second Ensure: %v", err)
	}
}

func TestOpenWithoutStoreDirFails(t *testing.T) {
	if _, err := Open(context.Background(), Config{Port: -1}); err != ErrNoStoreDir {
		t.Errorf("err = %v, want ErrNoStoreDir", err)
	}
}

// The bus must stay light: no Graph SDK in its dependency graph.
func TestNoGraphSDKDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	if strings.Contains(string(out), "msgraph-sdk-go") {
		t.Error("internal/bus depends on msgraph-sdk-go")
	}
}

func TestKeyPartIsValidAndInjective(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, s := range []string{"alice@contoso.com", "alice=40contoso.com", "high-risk-user/o'brien@x.com", "a.b", "a_b", "", "=", "é*> \t"} {
		k := KeyPart(s)
		if prev, dup := seen[k]; dup {
			t.Errorf("KeyPart(%q) = KeyPart(%q) = %q", s, prev, k)
		}
		seen[k] = s
		if _, err := kv.Put(ctx, "test."+k, []byte("x")); err != nil {
			t.Errorf("KeyPart(%q) = %q is not a valid key: %v", s, k, err)
		}
	}
	if got := KeyPart("alice@contoso.com"); got != "alice=40contoso=2Ecom" {
		t.Errorf("KeyPart = %q", got)
	}
}
