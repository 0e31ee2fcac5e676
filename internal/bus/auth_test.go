package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

const authTenant = "t-auth"

func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, pub
}

// watchedConn is a client connection whose asynchronous errors (the server's
// permission violations) arrive on errs.
type watchedConn struct {
	*nats.Conn
	errs chan error
}

func connectAs(t *testing.T, url string, kp nkeys.KeyPair) (*watchedConn, error) {
	t.Helper()
	opts, err := ClientAuth{Key: kp}.Options()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	opts = append(opts, nats.Name(t.Name()), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return &watchedConn{Conn: nc, errs: errs}, nil
}

// violation waits for the server's permission violation naming subject.
func (c *watchedConn) violation(t *testing.T, op, subject string) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) &&
				strings.Contains(strings.ToLower(err.Error()), strings.ToLower(op)) {
				return
			}
		case <-timeout.C:
			t.Fatalf("no permission violation for %s %q", op, subject)
		}
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// permissionCheck is what the attack suite needs of a server: its URL, an
// engine connection, and the keys of an analyst and a reviewer it lets in.
type permissionCheck struct {
	url      string
	tenant   string // the analysts' tenant token
	engine   jetstream.JetStream
	analyst  nkeys.KeyPair
	reviewer nkeys.KeyPair
}

// run plays an analyst and a reviewer trying everything the trust model
// forbids (design.md, "Trust model"; issue 13, "Proof"), asserting each
// attempt is refused by the server and changed nothing, and that what an
// analyst may do still works.
func (pc permissionCheck) run(t *testing.T) {
	ctx := context.Background()
	anaPub, _ := pc.analyst.PublicKey()
	revPub, _ := pc.reviewer.PublicKey()

	t.Run("anonymous and unknown keys are refused", func(t *testing.T) {
		if nc, err := nats.Connect(pc.url, nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Fatal("an anonymous connection was accepted")
		}
		stranger, _ := newUser(t)
		if _, err := connectAs(t, pc.url, stranger); err == nil {
			t.Fatal("an unknown nkey was accepted")
		}
	})

	a, err := connectAs(t, pc.url, pc.analyst)
	if err != nil {
		t.Fatalf("analyst connect: %v", err)
	}
	ajs, _ := jetstream.New(a.Conn)

	t.Run("analyst publishes a request and gets the stream's ack on its own inbox", func(t *testing.T) {
		before := streamMsgs(t, pc.engine, StreamActions)
		if _, err := ajs.Publish(ctx, ActionSubject(authTenantOr(pc.tenant), "revoke_sessions"), []byte(`{}`)); err != nil {
			t.Fatalf("analyst's JetStream publish: %v", err)
		}
		if got := streamMsgs(t, pc.engine, StreamActions); got != before+1 {
			t.Fatalf("ACTIONS holds %d messages, want %d", got, before+1)
		}
		if _, err := a.SubscribeSync(ResultsFilterFor(authTenantOr(pc.tenant), anaPub)); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-a.errs:
			t.Fatalf("own result subject refused: %v", err)
		default:
		}
	})

	for _, subj := range []string{"_INBOX.>", "responder.*.result.>", ResultsFilterFor(authTenantOr(pc.tenant), revPub), InboxPrefix(revPub) + ".>", ">", "$KV.>", "m365.>", "responder.*.audit.>"} {
		t.Run("analyst may not subscribe "+subj, func(t *testing.T) {
			if _, err := a.SubscribeSync(subj); err != nil {
				return // refused locally: fine too
			}
			a.violation(t, "subscription", subj)
		})
	}

	t.Run("analyst may not publish events or audit records", func(t *testing.T) {
		events, auditN := streamMsgs(t, pc.engine, StreamEvents), streamMsgs(t, pc.engine, StreamAudit)
		ev := EventSubject(authTenantOr(pc.tenant), "risk_detection", "forged")
		_ = a.Publish(ev, []byte(`{"id":"forged"}`))
		a.violation(t, "publish", ev)
		au := AuditSubject(authTenantOr(pc.tenant), "succeeded", "disable_user")
		_ = a.Publish(au, []byte(`{"id":"forged"}`))
		a.violation(t, "publish", au)
		if streamMsgs(t, pc.engine, StreamEvents) != events || streamMsgs(t, pc.engine, StreamAudit) != auditN {
			t.Fatal("a refused publish reached a stream")
		}
	})

	t.Run("analyst may not write or read KV, nor call the JetStream API", func(t *testing.T) {
		kv, err := pc.engine.KeyValue(ctx, BucketState)
		if err != nil {
			t.Fatal(err)
		}
		key := "approval.forged"
		subj := "$KV." + BucketState + "." + key
		_ = a.Publish(subj, []byte(`{"state":"approved"}`))
		a.violation(t, "publish", subj)
		if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("forged KV entry: %v", err)
		}
		for _, api := range []string{"$JS.API.STREAM.INFO." + StreamAudit, "$JS.API.CONSUMER.CREATE." + StreamAudit, "$JS.API.DIRECT.GET.KV_" + BucketState + ".$KV." + BucketState + ".approval.x"} {
			_ = a.PublishRequest(api, InboxPrefix(anaPub)+".api", []byte(`{}`))
			a.violation(t, "publish", api)
		}
		if _, err := ajs.KeyValue(ctx, BucketState); err == nil {
			t.Fatal("analyst opened the KV bucket")
		}
	})

	rv, err := connectAs(t, pc.url, pc.reviewer)
	if err != nil {
		t.Fatalf("reviewer connect: %v", err)
	}
	t.Run("reviewer may not act or approve", func(t *testing.T) {
		before := streamMsgs(t, pc.engine, StreamActions)
		for _, subj := range []string{ActionSubject(authTenantOr(pc.tenant), "disable_user"), ApprovalSubject(authTenantOr(pc.tenant))} {
			_ = rv.Publish(subj, []byte(`{}`))
			rv.violation(t, "publish", subj)
		}
		if streamMsgs(t, pc.engine, StreamActions) != before {
			t.Fatal("a reviewer's request reached ACTIONS")
		}
	})
	t.Run("reviewer may ask the audit query subject", func(t *testing.T) {
		nc := engineConn(t, pc)
		sub, err := nc.SubscribeSync(AuditQuerySubject(authTenantOr(pc.tenant)))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := rv.Publish(AuditQuerySubject(authTenantOr(pc.tenant)), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("the engine did not receive the reviewer's query: %v", err)
		}
	})
}

func authTenantOr(t string) string {
	if t == "" || t == "*" {
		return authTenant
	}
	return t
}

func engineConn(t *testing.T, pc permissionCheck) *nats.Conn {
	t.Helper()
	nc := pc.engine.Conn()
	if nc == nil {
		t.Fatal("no engine connection")
	}
	return nc
}

func TestEmbeddedServerEnforcesTheTrustModel(t *testing.T) {
	ctx := context.Background()
	ana, anaPub := newUser(t)
	rev, revPub := newUser(t)
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1, Tenant: authTenant,
		Identities: []Identity{{PublicKey: anaPub, Analyst: true, Reviewer: true}, {PublicKey: revPub, Reviewer: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	permissionCheck{url: b.ClientURL(), tenant: authTenant, engine: b.JS, analyst: ana, reviewer: rev}.run(t)
}

// TestShippedServerConfig starts a NATS server from docs/nats-server.conf,
// the file docs/nats.md and docker-compose.yml use, with its placeholders
// replaced by generated keys, and runs the same attacks against it.
func TestShippedServerConfig(t *testing.T) {
	raw, err := os.ReadFile("../../docs/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	engKP, engPub := newUser(t)
	ana, anaPub := newUser(t)
	rev, revPub := newUser(t)
	con, conPub := newUser(t)
	conf := strings.NewReplacer("@TENANT@", authTenant, "@ENGINE_KEY@", engPub, "@ADMIN_KEY@", anaPub, "@REVIEWER_KEY@", revPub, "@CONSOLE_KEY@", conPub).Replace(string(raw))
	if strings.Contains(conf, "@") && strings.Contains(conf, "_KEY@") {
		t.Fatal("a placeholder is left in the configuration")
	}
	// The web console's user has an analyst's rights and no more.
	t.Run("console", func(t *testing.T) {
		b, url := serveShippedConfig(t, conf, engKP)
		permissionCheck{url: url, tenant: authTenant, engine: b.JS, analyst: con, reviewer: rev}.run(t)
	})
	// A deployment without a console deletes the console's line (as
	// docker-compose.yml does when RESPONDER_CONSOLE_KEY is unset): the rest
	// still holds.
	var kept []string
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.Contains(l, "@CONSOLE_KEY@") || strings.HasPrefix(strings.TrimSpace(l), "#") {
			kept = append(kept, l)
		}
	}
	noConsole := strings.NewReplacer("@TENANT@", authTenant, "@ENGINE_KEY@", engPub, "@ADMIN_KEY@", anaPub, "@REVIEWER_KEY@", revPub).Replace(strings.Join(kept, "\n"))
	b, url := serveShippedConfig(t, noConsole, engKP)
	permissionCheck{url: url, tenant: authTenant, engine: b.JS, analyst: ana, reviewer: rev}.run(t)
	if nc, err := connectAs(t, url, con); err == nil {
		nc.Close()
		t.Error("the console's key connected to a server configured without it")
	}
}

// serveShippedConfig starts a server from conf (docs/nats-server.conf filled
// in) on a random loopback port and opens the engine's bus on it.
func serveShippedConfig(t *testing.T, conf string, engKP nkeys.KeyPair) (*Bus, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("docs/nats-server.conf: %v", err)
	}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, t.TempDir(), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	b, err := Open(ctx, Config{URL: srv.ClientURL(), Auth: ClientAuth{Key: engKP}, Name: "engine"})
	if err != nil {
		t.Fatalf("engine with its key: %v", err)
	}
	t.Cleanup(b.Close)
	return b, srv.ClientURL()
}

func TestSetIdentitiesDisconnectsARemovedKeyAtOnce(t *testing.T) {
	ctx := context.Background()
	alice, alicePub := newUser(t)
	bob, bobPub := newUser(t)
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1, Tenant: authTenant,
		Identities: []Identity{{PublicKey: alicePub, Analyst: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := connectAs(t, b.ClientURL(), bob); err == nil {
		t.Fatal("bob connected before he was added")
	}
	closed := make(chan struct{})
	opts, _ := ClientAuth{Key: alice}.Options()
	nc, err := nats.Connect(b.ClientURL(), append(opts, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if err := b.SetIdentities([]Identity{{PublicKey: bobPub, Analyst: true}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's connection outlived the removal of her key")
	}
	if _, err := connectAs(t, b.ClientURL(), alice); err == nil {
		t.Fatal("alice connected again after her key was removed")
	}
	if _, err := connectAs(t, b.ClientURL(), bob); err != nil {
		t.Fatalf("bob, added, cannot connect: %v", err)
	}
	// The engine's own connection survives every reload.
	if !b.NC.IsConnected() {
		t.Fatal("the engine lost its connection")
	}
	if _, err := b.JS.Stream(ctx, StreamAudit); err != nil {
		t.Fatal(err)
	}
}

func TestNonceSignerSignsOnlyNonces(t *testing.T) {
	kp, _ := newUser(t)
	sign := NonceSigner(kp)
	if _, err := sign([]byte("Zq3eXbT7aQ1_-cW")); err != nil {
		t.Fatalf("a server nonce: %v", err)
	}
	for _, bad := range []string{"", "responder-signed-message-v1\n{\"action\":\"disable_user\"}", strings.Repeat("a", 65), "has space"} {
		if _, err := sign([]byte(bad)); err == nil {
			t.Errorf("signed %q", bad)
		}
	}
}

func TestEmbeddedServerRefusesPlainTextBeyondLoopback(t *testing.T) {
	_, err := Open(context.Background(), Config{StoreDir: t.TempDir(), Host: "0.0.0.0", Port: -1})
	if !errors.Is(err, ErrPlainNonLoopback) {
		t.Fatalf("Open on 0.0.0.0 without TLS: %v", err)
	}
}

// docs/nats.md shows the shipped configuration as it is.
func TestNatsDocShowsTheShippedConfig(t *testing.T) {
	conf, err := os.ReadFile("../../docs/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/nats.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```hcl\n"+string(conf)+"```") {
		t.Fatal("docs/nats.md does not show docs/nats-server.conf verbatim")
	}
}
