package bus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A key whose rights shrink (analyst to reviewer) loses its connection at
// once and, reconnected, has only the new rights: its request is refused by
// the server. A client that presents a listed key with a signature over
// something other than the nonce is refused.
func TestSetIdentitiesNarrowsAnOpenConnection(t *testing.T) {
	ctx := context.Background()
	alice, alicePub := newUser(t)
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1, Tenant: authTenant,
		Identities: []Identity{{PublicKey: alicePub, Analyst: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := connectAs(t, b.ClientURL(), alice)
	if err != nil {
		t.Fatal(err)
	}
	action := ActionSubject(authTenant, "revoke_sessions")
	if err := c.Publish(action, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil || c.LastError() != nil {
		t.Fatalf("an analyst publishing a request: %v %v", err, c.LastError())
	}
	closed := make(chan struct{})
	c.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.SetIdentities([]Identity{{PublicKey: alicePub, Reviewer: true}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection kept the analyst's rights after they were withdrawn")
	}
	again, err := connectAs(t, b.ClientURL(), alice)
	if err != nil {
		t.Fatalf("a reviewer may still connect: %v", err)
	}
	if err := again.Publish(action, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	again.violation(t, "publish", action)

	// A signature over anything but the server's nonce is refused.
	forged := nats.Nkey(alicePub, func([]byte) ([]byte, error) { return alice.Sign([]byte("not the nonce")) })
	if nc, err := nats.Connect(b.ClientURL(), forged, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a signature over something else than the nonce was accepted")
	}
}

// The users change while the engine reads its KV bucket (direct gets) and
// clients connect: no reload of the server happens (a reload raced with
// direct gets inside nats-server, caught by -race), every read succeeds and
// the engine keeps its connection.
func TestSetIdentitiesWhileReading(t *testing.T) {
	ctx := context.Background()
	_, alicePub := newUser(t)
	bob, bobPub := newUser(t)
	b, err := Open(ctx, Config{StoreDir: t.TempDir(), Port: -1, Tenant: authTenant})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv, err := b.JS.KeyValue(ctx, BucketState)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "probe", []byte("1")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := kv.Get(ctx, "probe"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				select {
				case errs <- err:
				default:
				}
				return
			}
		}
	})
	for i := range 41 { // the last (even) list leaves bob out
		ids := []Identity{{PublicKey: alicePub, Analyst: true}}
		if i%2 == 1 {
			ids = append(ids, Identity{PublicKey: bobPub, Reviewer: true})
		}
		if err := b.SetIdentities(ids); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a KV read failed while the users changed: %v", err)
	default:
	}
	// The last list has no bob.
	if _, err := connectAs(t, b.ClientURL(), bob); err == nil {
		t.Fatal("bob connected after the last list left him out")
	}
	if !b.NC.IsConnected() {
		t.Fatal("the engine lost its connection")
	}
}
