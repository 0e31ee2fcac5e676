package auditquery

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/bus"
)

// loopback starts a plain NATS server on a random loopback port and returns
// a connection to it.
func loopback(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// engine answers the tenant's queries with replies[i] for the i-th query
// (the last one again after that) and records each query it got.
type engine struct {
	mu      sync.Mutex
	queries []Query
}

func (e *engine) serve(t *testing.T, nc *nats.Conn, tenant string, replies ...Reply) {
	t.Helper()
	sub, err := nc.Subscribe(bus.AuditQuerySubject(tenant), func(m *nats.Msg) {
		var q Query
		if err := json.Unmarshal(m.Data, &q); err != nil {
			t.Errorf("undecodable query: %v", err)
		}
		e.mu.Lock()
		e.queries = append(e.queries, q)
		rep := replies[min(len(e.queries), len(replies))-1]
		e.mu.Unlock()
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func (e *engine) got() []Query {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Query(nil), e.queries...)
}

func client(t *testing.T, nc *nats.Conn, tenant string, timeout time.Duration) Client {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return Client{NC: nc, Tenant: tenant, Key: kp, Name: "rev", Timeout: timeout}
}

// An engine whose JetStream is electing a leader (a server rejoining its
// cluster) answers Retry: the client asks again, each time a freshly signed
// query (the engine refuses a query id it has seen), and gets the page.
func TestDoAsksAgainWhileTheEngineSaysRetry(t *testing.T) {
	nc := loopback(t)
	var e engine
	busy := Reply{Error: "engine could not read the audit trail: nats: no response from stream", Retry: true}
	e.serve(t, nc, "t1", busy, busy, Reply{OK: true, LastSeq: 7})
	rep, err := client(t, nc, "t1", 30*time.Second).Do(context.Background(), Query{Op: OpList})
	if err != nil || !rep.OK || rep.LastSeq != 7 {
		t.Fatalf("Do = %+v, %v; want the third reply", rep, err)
	}
	qs := e.got()
	if len(qs) != 3 {
		t.Fatalf("the engine got %d queries, want 3", len(qs))
	}
	ids := map[string]bool{}
	for _, q := range qs {
		ids[q.ID] = true
	}
	if len(ids) != 3 {
		t.Errorf("the retries repeated a query id (%d distinct of 3): the engine would refuse them as replays", len(ids))
	}
}

// A refusal, or a failure that does not pass by itself, is reported at once:
// asked once, never again.
func TestDoDoesNotRepeatARefusal(t *testing.T) {
	for _, rep := range []Reply{
		{Error: "unauthorised: rev (analyst) may not read the audit trail", Rejected: "unauthorised", Retry: true},
		{Error: "malformed query: want a version 1 query object"},
		{Error: "audit: record not found"},
	} {
		nc := loopback(t)
		var e engine
		e.serve(t, nc, "t2", rep)
		_, err := client(t, nc, "t2", 30*time.Second).Do(context.Background(), Query{Op: OpList})
		if err == nil || err.Error() != rep.Error {
			t.Errorf("reply %+v: Do error %v, want %q", rep, err, rep.Error)
		}
		if n := len(e.got()); n != 1 {
			t.Errorf("reply %+v: asked %d times, want once", rep, n)
		}
	}
}

// An engine that keeps saying Retry is given up on within the timeout, with
// its last error and the attempts made.
func TestDoGivesUpWithinItsTimeout(t *testing.T) {
	nc := loopback(t)
	var e engine
	e.serve(t, nc, "t3", Reply{Error: "engine could not read the audit trail: context deadline exceeded", Retry: true})
	_, err := client(t, nc, "t3", 1500*time.Millisecond).Do(context.Background(), Query{Op: OpList})
	if err == nil || !strings.Contains(err.Error(), "could not read the audit trail") || !strings.Contains(err.Error(), "attempts") {
		t.Fatalf("Do error %v, want the engine's error and the attempts", err)
	}
	if n := len(e.got()); n < 2 {
		t.Errorf("asked %d times, want at least 2 within the timeout", n)
	}
}

// With no engine at all the client says so (within its timeout, not after
// a hang).
func TestDoReportsNoEngine(t *testing.T) {
	nc := loopback(t)
	_, err := client(t, nc, "t4", time.Second).Do(context.Background(), Query{Op: OpList})
	if err == nil || !strings.Contains(err.Error(), "no engine is serving audit queries") {
		t.Fatalf("Do error %v, want no engine", err)
	}
}
