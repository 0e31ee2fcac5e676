package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/m365sim"
)

// ---- the binary ----

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// responderBinary builds cmd/responder once per test binary run (the Go build
// cache makes a rebuild cheap) and returns its path.
func responderBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("no go tool on PATH: %w", err)
			return
		}
		buildDir, err = os.MkdirTemp("", "responder-reliability-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(buildDir, "responder")
		cmd := exec.Command(goTool, "build", "-o", buildPath, "github.com/responder-sec/responder/cmd/responder")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ---- NATS owned by the test ----

// startNATS runs a JetStream server in the test process, so it outlives every
// engine process the test kills.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "reliability", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// client is the test's own connection to the bus (analyst and auditor).
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func connect(t *testing.T, url string) *client {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("reliability-test"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &client{nc: nc, js: js}
}

// ---- the workload ----

// workload is a run of mixed analyst requests over many users: every user gets
// at most one revoke_sessions request and at most one disable_user request, so
// that each Graph write in the wire log is attributable to one request.
type workload struct {
	reqs  []*actions.Request
	users []m365sim.User
	// key signs the requests (the engine's local administrator key); nil sends
	// them unsigned (a worker without a Gate).
	key nkeys.KeyPair
}

func newWorkload(sim *m365sim.Tenant, n int, rng *rand.Rand) *workload {
	w := &workload{}
	nUsers := (n + 1) / 2
	for i := range nUsers {
		w.users = append(w.users, sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("rel%05d@contoso.com", i)}))
	}
	now := time.Now().UTC()
	for i, u := range w.users {
		for _, a := range []actions.Name{actions.RevokeSessions, actions.DisableUser} {
			if len(w.reqs) >= n {
				break
			}
			target := u.UserPrincipalName
			if (i+len(a))%3 == 0 {
				target = u.ID // object ids as well as UPNs
			}
			w.reqs = append(w.reqs, &actions.Request{
				Version: actions.Version, ID: uuid.NewString(), Action: a, Target: actions.Target{User: target},
				RequestedBy: audit.Actor{Kind: "analyst", Name: analyst.LocalAdminName}, Reason: "reliability test",
				Ticket: fmt.Sprintf("REL-%d", len(w.reqs)), RequestedAt: now,
			})
		}
	}
	rng.Shuffle(len(w.reqs), func(i, j int) { w.reqs[i], w.reqs[j] = w.reqs[j], w.reqs[i] })
	return w
}

// publish sends every request at about rate per second; about 5% are sent a
// second time (an analyst retrying), which the stream deduplicates by id.
func (w *workload) publish(ctx context.Context, js jetstream.JetStream, tenant string, rate int, rng *rand.Rand) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for _, r := range w.reqs {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for {
			err := w.send(ctx, js, tenant, r)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return err
			}
			// The server is ours and up; a failure here is a transient timeout.
			time.Sleep(50 * time.Millisecond)
		}
		if rng.IntN(20) == 0 {
			_ = w.send(ctx, js, tenant, r)
		}
	}
	return nil
}

func (w *workload) send(ctx context.Context, js jetstream.JetStream, tenant string, r *actions.Request) error {
	if w.key == nil {
		return actions.Publish(ctx, js, tenant, r)
	}
	return analyst.Publish(ctx, js, tenant, r, w.key)
}

// ---- reading the outcome ----

func allRecords(t *testing.T, js jetstream.JetStream) []audit.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []audit.Record
	if err := audit.List(ctx, js, audit.Filter{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// finals maps request id -> its final records.
func finals(recs []audit.Record) map[string][]audit.Record {
	m := map[string][]audit.Record{}
	for _, r := range recs {
		if r.RequestID != "" && r.Outcome.Final() {
			m[r.RequestID] = append(m[r.RequestID], r)
		}
	}
	return m
}

// waitAllFinal waits until every request of w has a final audit record.
func waitAllFinal(ctx context.Context, js jetstream.JetStream, w *workload) (missing int, err error) {
	for {
		var seen = map[string]bool{}
		lerr := audit.List(ctx, js, audit.Filter{}, func(r audit.Record) error {
			if r.Outcome.Final() {
				seen[r.RequestID] = true
			}
			return nil
		})
		missing = 0
		for _, r := range w.reqs {
			if !seen[r.ID] {
				missing++
			}
		}
		if lerr == nil && missing == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return missing, fmt.Errorf("%d of %d requests have no final audit record: %w", missing, len(w.reqs), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// checkExactlyOnce asserts that every request of w has exactly one final audit
// record and at most one accepted record, and returns the final record per id.
func checkExactlyOnce(t *testing.T, recs []audit.Record, w *workload) map[string]audit.Record {
	t.Helper()
	fin := finals(recs)
	accepted := map[string]int{}
	for _, r := range recs {
		if r.Outcome == audit.Accepted {
			accepted[r.RequestID]++
		}
	}
	out := map[string]audit.Record{}
	bad := 0
	for _, r := range w.reqs {
		f := fin[r.ID]
		if len(f) != 1 || accepted[r.ID] > 1 {
			bad++
			if bad <= 5 {
				t.Errorf("request %s (%s %s): %d final records, %d accepted records", r.ID, r.Action, r.Target.User, len(f), accepted[r.ID])
			}
			continue
		}
		out[r.ID] = f[0]
	}
	if bad > 0 {
		t.Errorf("%d of %d requests do not have exactly one final outcome", bad, len(w.reqs))
	}
	noAccepted := 0
	for _, r := range w.reqs {
		if accepted[r.ID] == 0 {
			noAccepted++
		}
	}
	if noAccepted > 0 {
		// Known defect (reported): a process killed between the KV claim and the
		// accepted record leaves a claimed state; the redelivery skips the
		// accepted record (actions/worker.go, Handle, `case st == nil`).
		msg := "%d requests have a final outcome but no accepted record"
		if knownMissingAccepted {
			t.Logf("KNOWN DEFECT: "+msg, noAccepted)
		} else {
			t.Errorf(msg, noAccepted)
		}
	}
	return out
}

// Known defects in other packages, reported to their owners. Each downgrades
// exactly one signature from a failure to a log line; set it to false once
// the fix lands.
const (
	// actions/worker.go: a redelivered, claimed-but-unfinished request gets no
	// accepted record.
	knownMissingAccepted = false
	// m365/m365.go NewGraphClient: the SDK's in-place retry of a 429/503 request with a body (PATCH, $batch POST)
	// resends the body uncompressed with Content-Encoding: gzip, which Graph
	// answers 400 "could not be decompressed"; the request fails permanently.
	knownRetryGzip = false
)

// checkEffects asserts, from the emulator's wire log, that no non-idempotent
// effect happened twice.
//
// Non-idempotent here: POST /users/{id}/revokeSignInSessions. Each successful
// call moves the user's signInSessionsValidFrom to now and invalidates every
// refresh token and session issued before it, including ones the user obtained
// after an earlier revoke (a second call signs the user out again). So a
// revoke_sessions request must cause at most one successful call, and one
// exactly when it succeeded. Idempotent: PATCH /users/{id} {accountEnabled:
// false}, which sets a value (a repeat changes nothing); repeats are counted
// and logged, not failed.
func checkEffects(t *testing.T, sim *m365sim.Tenant, w *workload, final map[string]audit.Record) {
	t.Helper()
	userKey := map[string]string{} // UPN or id (lower) -> user id
	for _, u := range w.users {
		userKey[strings.ToLower(u.UserPrincipalName)] = u.ID
		userKey[strings.ToLower(u.ID)] = u.ID
	}
	revokes, patches := map[string]int{}, map[string]int{}
	for _, e := range sim.WireLog() {
		if e.Status < 200 || e.Status > 299 {
			continue
		}
		segs := strings.Split(strings.TrimPrefix(strings.TrimPrefix(e.Path, "/v1.0"), "/"), "/")
		if len(segs) < 2 || !strings.EqualFold(segs[0], "users") {
			continue
		}
		k, _ := url.PathUnescape(segs[1])
		id, ok := userKey[strings.ToLower(k)]
		if !ok {
			continue
		}
		switch {
		case e.Method == "POST" && len(segs) == 3 && strings.EqualFold(segs[2], "revokeSignInSessions"):
			revokes[id]++
		case e.Method == "PATCH" && len(segs) == 2:
			patches[id]++
		}
	}
	wantRevoke := map[string]int{}
	for _, r := range w.reqs {
		if r.Action == actions.RevokeSessions && final[r.ID].Outcome == audit.Succeeded {
			wantRevoke[userKey[strings.ToLower(r.Target.User)]]++
		}
	}
	dupRevokes, redundantPatches := 0, 0
	for _, u := range w.users {
		got, want := revokes[u.ID], wantRevoke[u.ID]
		if got != want {
			dupRevokes++
			if dupRevokes <= 5 {
				t.Errorf("user %s: %d successful revokeSignInSessions calls for %d succeeded revoke_sessions requests", u.UserPrincipalName, got, want)
			}
		}
		if su, _ := sim.User(u.ID); su.RevokeCount != got {
			t.Errorf("user %s: emulator counts %d revokes, wire log %d", u.UserPrincipalName, su.RevokeCount, got)
		}
		if patches[u.ID] > 1 {
			redundantPatches += patches[u.ID] - 1
		}
	}
	if dupRevokes > 0 {
		t.Errorf("%d users were revoked a number of times other than their succeeded requests", dupRevokes)
	}
	t.Logf("wire log: %d users revoked, %d redundant (idempotent) PATCHes", len(revokes), redundantPatches)
}

// checkDrained asserts that nothing is stuck: the ACTIONS work queue is empty
// and the workers' consumer has nothing pending or unacknowledged.
func checkDrained(t *testing.T, js jetstream.JetStream, tenant string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		s, err := js.Stream(ctx, bus.StreamActions)
		if err != nil {
			t.Fatal(err)
		}
		si, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Consumer(ctx, actions.ConsumerName+"-"+bus.Token(tenant))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if si.State.Msgs == 0 && ci.NumPending == 0 && ci.NumAckPending == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Errorf("stuck: ACTIONS holds %d messages; consumer pending %d, unacknowledged %d, redelivered %d",
				si.State.Msgs, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkChain(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := audit.Verify(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK {
		t.Errorf("audit chain broken at seq %d: %s", v.BadSeq, v.Reason)
	}
	t.Logf("audit chain: %d records verified", v.Records)
}

func outcomeCounts(final map[string]audit.Record) string {
	c := map[string]int{}
	for _, r := range final {
		key := r.Action + "/" + string(r.Outcome)
		if r.Outcome == audit.Refused && strings.Contains(r.Detail, "blast radius") {
			key += "(blast radius)"
		}
		c[key]++
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// SeedEnv names the environment variable that replays a randomised run.
const SeedEnv = "RESPONDER_TEST_SEED"

// testSeed is the seed of a randomised test: RESPONDER_TEST_SEED when set (to
// replay a failure), else a fresh one. It is printed either way, so a failing
// run names the seed that replays it.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv(SeedEnv); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q is not an unsigned integer: %v", SeedEnv, v, err)
		}
		t.Logf("seed %d (from %s)", seed, SeedEnv)
		return seed
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	return seed
}
