package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/bus/bustest"
	"github.com/responder-sec/responder/internal/m365sim"
)

// clusterPlaybook contains a user on a high-risk detection: disable, then
// revoke (the second step is relayed by the engine that ran the first).
const clusterPlaybook = `name: cluster-high-risk
description: Contain a user on a high-risk detection.
enabled: true
trigger:
  source: risk_detection
  when:
    - field: raw.riskLevel
      equals: high
reason: "high risk for {{ user || user_id }}"
steps:
  - action: disable_user
    target:
      user: "{{ user || user_id }}"
  - action: revoke_sessions
    target:
      user: "{{ user || user_id }}"
suppression:
  window: 1h
`

// clusterAnalyst is the test's name in the analysts file.
const clusterAnalyst = "cluster-test"

// TestCluster: three NATS servers in the test process with every stream
// replicated three ways, two engine processes sharing them, and a mass
// containment (400 signed disable/revoke requests). While the requests are
// being worked, the NATS server leading the ACTIONS stream is stopped and the
// engine holding the feed lease is killed with SIGKILL; it is not restarted.
// The other engine finishes alone: every request has exactly one final audit
// outcome, and it is success; no revoke happened twice (wire log); the chain
// verifies; the work queue is empty; the feed lease moved to the survivor,
// whose feeds pick up a risk detection injected after the kill and run its
// playbook; and a request signed by the dead engine's key is executed by the
// survivor (the engines trust each other's keys through one analysts file).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster run: about 45 seconds (messages held by the killed engine come back after the 30 s AckWait)")
	}
	const (
		requests = 400
		rate     = 200 // requests published per second
	)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	responderBinary(t) // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	began := time.Now()

	cl := bustest.Start(t, ctx, 3, "responder-reliability")
	t.Logf("NATS cluster formed after %s", time.Since(began).Round(100*time.Millisecond))
	urls := cl.ClientURLs()
	b, err := bus.Open(ctx, bus.Config{URL: urls, Replicas: 3, Name: "reliability-cluster-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	checkReplicas(t, ctx, b.JS)
	t.Logf("R3 streams after %s", time.Since(began).Round(100*time.Millisecond))

	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	tenant := sim.Info().TenantID

	// Two engines with their own data directories and engine keys, and one
	// analysts file (as docs/operations.md says) naming the test's analyst key
	// and both engine keys, mounted into both.
	testKey, err := analyst.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	engA, engB := newEngineProc(t, urls, sim), newEngineProc(t, urls, sim)
	keyA := engineKey(t, engA)
	analysts := writeAnalystsFile(t, testKey, keyA, engineKey(t, engB))
	for _, e := range []*engineProc{engA, engB} {
		e.args = append(e.args, "--analysts", analysts)
		if e == engA {
			// B is started without --replicas: it must keep the cluster's
			// R3 streams and buckets as they are (checkReplicas at the end).
			e.args = append(e.args, "--replicas", "3")
		}
		pb := argValue(t, e.args, "--playbooks")
		if err := os.WriteFile(filepath.Join(pb, "cluster-high-risk.yaml"), []byte(clusterPlaybook), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("engine logs (tails):\n%s%s", engineLogs(engA, "A"), engineLogs(engB, "B"))
			t.Logf("NATS servers' warnings:\n%s", cl.Warnings(40))
		}
	}()

	kv, err := b.TenantState(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	leaseKey := bus.LeaseKey(bus.FeedLeaseName(tenant))
	// A starts first and takes the feed lease; B joins once A holds it.
	engA.start()
	if err := waitLease(ctx, kv, leaseKey, engA); err != nil {
		t.Fatal(err)
	}
	t.Logf("engine A holds the feed lease after %s", time.Since(began).Round(100*time.Millisecond))
	engB.start()
	if err := waitPulling(ctx, b.JS, tenant, engA, engB); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster, bus and both engines up after %s", time.Since(began).Round(100*time.Millisecond))

	w := newWorkload(sim, requests, rng)
	for _, r := range w.reqs {
		r.RequestedBy.Name = clusterAnalyst
	}
	w.key = testKey
	pubCtx, pubCancel := context.WithCancel(ctx)
	defer pubCancel()
	pubDone := make(chan error, 1)
	go func() { pubDone <- publishPaced(pubCtx, b.JS, tenant, w, rate) }()

	// The faults, once a quarter of the requests have been worked (acknowledged
	// and so gone from the work queue) and while the rest still arrive.
	leader, err := streamLeader(ctx, b.JS, bus.StreamActions)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitWorked(ctx, b.JS, requests/4); err != nil {
		t.Fatal(err)
	}
	faultAt := time.Now()
	cl.Stop(leader)
	engA.kill()
	t.Logf("stopped NATS server %s (ACTIONS leader) and killed engine A (feed lease holder) at %s",
		leader, faultAt.Sub(began).Round(100*time.Millisecond))

	// After the kill: a risk detection only the survivor's feeds can see, and a
	// request signed by the dead engine's key, which only the survivor can run.
	risky := sim.AddUser(m365sim.User{UserPrincipalName: "risky@contoso.com"})
	sim.InjectRiskDetection(m365sim.RiskDetection{UserID: risky.ID, RiskLevel: "high", IPAddress: "203.0.113.77"})
	x := crossSigned(sim, keyA)
	for _, r := range x.reqs {
		if err := sendRetry(ctx, b.JS, tenant, x, r); err != nil {
			t.Fatalf("publishing the request signed by engine A's key: %v", err)
		}
	}

	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatalf("publishing: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("publishing did not finish: %v", ctx.Err())
	}
	all := &workload{reqs: append(append([]*actions.Request(nil), w.reqs...), x.reqs...), users: append(append([]m365sim.User(nil), w.users...), x.users...)}
	if missing, err := waitAllFinal(ctx, b.JS, all); err != nil {
		t.Fatalf("%v (%d missing)", err, missing)
	}
	t.Logf("every request final %s after the faults", time.Since(faultAt).Round(100*time.Millisecond))

	// The feeds resumed under B: the lease is B's, and the detection injected
	// after the kill went through B's feed, the matcher and both playbook steps.
	if err := waitLease(ctx, kv, leaseKey, engB); err != nil {
		t.Error(err)
	}
	pbRecs, err := waitPlaybookFinal(ctx, b.JS, risky)
	if err != nil {
		t.Error(err)
	}
	// Messages the killed engine held come back after the 30 s AckWait; the
	// survivor acknowledges them without acting again (their requests may be
	// final already). Nothing may be left.
	checkQueueEmpty(t, ctx, urls, tenant, cl)
	if err := engB.exitedEarly(); err != nil {
		t.Error(err)
	}
	engB.stop()

	recs := allRecords(t, b.JS)
	final := checkExactlyOnce(t, recs, all)
	t.Logf("outcomes: %s", outcomeCounts(final))
	notOK := 0
	for _, r := range all.reqs {
		if f, ok := final[r.ID]; ok && f.Outcome != audit.Succeeded {
			notOK++
			if notOK <= 5 {
				t.Errorf("request %s (%s %s): %s: %s", r.ID, r.Action, r.Target.User, f.Outcome, f.Detail)
			}
		}
	}
	if notOK > 0 {
		t.Errorf("%d of %d requests did not succeed (no Graph fault was injected)", notOK, len(all.reqs))
	}
	for _, r := range x.reqs {
		if f := final[r.ID]; f.Actor.KeyID != mustPublic(t, keyA) {
			t.Errorf("request %s: audit actor key %q, want engine A's key", r.ID, f.Actor.KeyID)
		}
	}
	checkEffects(t, sim, all, final)
	checkRiskyContained(t, sim, risky, pbRecs)
	checkChain(t, b.JS)
	checkReplicas(t, ctx, b.JS, "KV_"+analyst.ReplayBucket)
	again := 0
	for _, f := range final {
		if f.Attempts > 1 {
			again++
		}
	}
	t.Logf("%d requests finished on a later delivery than the first", again)
	t.Logf("total %s", time.Since(began).Round(100*time.Millisecond))
}

// engineKey creates (or reads) the engine key in e's data directory, as the
// engine will on start, so that the analysts file can name it first.
func engineKey(t *testing.T, e *engineProc) nkeys.KeyPair {
	t.Helper()
	kp, _, err := analyst.EnsureEngineKey(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustPublic(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// writeAnalystsFile writes one analysts file for every engine: the test's key
// as an analyst allowed every action, and each engine key under engines:.
func writeAnalystsFile(t *testing.T, test nkeys.KeyPair, engines ...nkeys.KeyPair) string {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "version: 1\nanalysts:\n  - name: %s\n    public_key: %s\n    actions: [\"*\"]\nengines:\n", clusterAnalyst, mustPublic(t, test))
	for i, kp := range engines {
		fmt.Fprintf(&sb, "  - name: engine-%c\n    public_key: %s\n", 'a'+i, mustPublic(t, kp))
	}
	path := filepath.Join(t.TempDir(), "analysts.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func argValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	t.Fatalf("no %s among the engine arguments", name)
	return ""
}

// crossSigned is a disable and a revoke of a new user, requested by a
// playbook and signed by key (an engine key).
func crossSigned(sim *m365sim.Tenant, key nkeys.KeyPair) *workload {
	u := sim.AddUser(m365sim.User{UserPrincipalName: "crosstrust@contoso.com"})
	x := &workload{users: []m365sim.User{u}, key: key}
	for _, a := range []actions.Name{actions.DisableUser, actions.RevokeSessions} {
		x.reqs = append(x.reqs, &actions.Request{
			Version: actions.Version, ID: uuid.NewString(), Action: a, Target: actions.Target{User: u.UserPrincipalName},
			RequestedBy: audit.Actor{Kind: "playbook", Name: "cluster-cross-trust"}, Reason: "signed by the killed engine's key",
			RequestedAt: time.Now().UTC(),
		})
	}
	return x
}

// sendRetry publishes r until the stream acknowledges it; the stream
// deduplicates a repeat by the request id. Each attempt has its own deadline:
// a publish whose reply was lost with a stopped server never gets one.
func sendRetry(ctx context.Context, js jetstream.JetStream, tenant string, w *workload, r *actions.Request) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := w.send(actx, js, tenant, r)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// publishPaced sends every request of w at about rate per second, each until
// the stream has it.
func publishPaced(ctx context.Context, js jetstream.JetStream, tenant string, w *workload, rate int) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for _, r := range w.reqs {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := sendRetry(ctx, js, tenant, w, r); err != nil {
			return err
		}
	}
	return nil
}

// pollUntil calls cond every 100 ms until it reports done or ctx ends; the
// error names what was awaited and cond's last state. An error from cond
// means the wait is hopeless: pollUntil returns it at once.
func pollUntil(ctx context.Context, what string, cond func(ctx context.Context) (done bool, state string, err error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, state, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up (%s): %w", what, state, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitLease waits until the feed lease names e's current process.
func waitLease(ctx context.Context, kv jetstream.KeyValue, key string, e *engineProc) error {
	e.mu.Lock()
	pid := 0
	if e.cmd != nil {
		pid = e.cmd.Process.Pid
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return pollUntil(ctx, fmt.Sprintf("feed lease held by pid %d", pid), func(ctx context.Context) (bool, string, error) {
		if err := e.exitedEarly(); err != nil {
			return false, "", err
		}
		ent, err := kv.Get(ctx, key)
		if err != nil {
			return false, err.Error(), nil
		}
		var rec struct {
			Holder string `json:"holder"`
		}
		if err := json.Unmarshal(ent.Value(), &rec); err != nil {
			return false, err.Error(), nil
		}
		return pid != 0 && strings.Contains(rec.Holder, fmt.Sprintf(":%d:", pid)), "holder " + rec.Holder, nil
	})
}

// waitPulling waits until every one of engines pulls from both the action
// workers' and the playbook matcher's consumers.
func waitPulling(ctx context.Context, js jetstream.JetStream, tenant string, engines ...*engineProc) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	n := len(engines)
	return pollUntil(ctx, fmt.Sprintf("%d engines pulling", n), func(ctx context.Context) (bool, string, error) {
		for _, e := range engines {
			if err := e.exitedEarly(); err != nil {
				return false, "", err
			}
		}
		ai, err := actionsConsumerInfo(ctx, js, tenant)
		if err != nil {
			return false, err.Error(), nil
		}
		mc, err := js.Consumer(ctx, bus.StreamEvents, "playbooks-"+bus.Token(tenant))
		if err != nil {
			return false, err.Error(), nil
		}
		mi, err := mc.Info(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return ai.NumWaiting >= n && mi.NumWaiting >= n, fmt.Sprintf("action pulls %d, matcher pulls %d", ai.NumWaiting, mi.NumWaiting), nil
	})
}

func actionsConsumerInfo(ctx context.Context, js jetstream.JetStream, tenant string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, bus.StreamActions, actions.ConsumerName+"-"+bus.Token(tenant))
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// streamLeader names the server leading a stream's Raft group.
func streamLeader(ctx context.Context, js jetstream.JetStream, name string) (string, error) {
	var leader string
	err := pollUntil(ctx, "stream "+name+" leader", func(ctx context.Context) (bool, string, error) {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return false, err.Error(), nil
		}
		si, err := s.Info(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		if si.Cluster == nil {
			return false, "no cluster info", nil
		}
		leader = si.Cluster.Leader
		return leader != "", "no leader", nil
	})
	return leader, err
}

// waitWorked waits until at least n requests have left the ACTIONS work queue
// (a message leaves it when a worker acknowledges it).
func waitWorked(ctx context.Context, js jetstream.JetStream, n uint64) error {
	return pollUntil(ctx, fmt.Sprintf("%d requests worked", n), func(ctx context.Context) (bool, string, error) {
		s, err := js.Stream(ctx, bus.StreamActions)
		if err != nil {
			return false, err.Error(), nil
		}
		si, err := s.Info(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		worked := si.State.LastSeq - si.State.Msgs
		return worked >= n, fmt.Sprintf("%d of %d published worked", worked, si.State.LastSeq), nil
	})
}

// waitPlaybookFinal waits for the final records of both playbook steps on u
// and returns them by action.
func waitPlaybookFinal(ctx context.Context, js jetstream.JetStream, u m365sim.User) (map[string]audit.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var got map[string]audit.Record
	err := pollUntil(ctx, "playbook steps on "+u.UserPrincipalName, func(ctx context.Context) (bool, string, error) {
		got = map[string]audit.Record{}
		err := audit.List(ctx, js, audit.Filter{}, func(r audit.Record) error {
			if r.Playbook == "cluster-high-risk" && r.Outcome.Final() &&
				(strings.EqualFold(r.Target["user"], u.UserPrincipalName) || strings.EqualFold(r.Target["user"], u.ID)) {
				got[r.Action] = r
			}
			return nil
		})
		if err != nil {
			return false, err.Error(), nil
		}
		return len(got) == 2, fmt.Sprintf("%d of 2 steps final", len(got)), nil
	})
	return got, err
}

// checkRiskyContained asserts the playbook's two steps succeeded once each on
// the user of the detection injected after the kill.
func checkRiskyContained(t *testing.T, sim *m365sim.Tenant, u m365sim.User, recs map[string]audit.Record) {
	t.Helper()
	for _, a := range []actions.Name{actions.DisableUser, actions.RevokeSessions} {
		r, ok := recs[string(a)]
		switch {
		case !ok:
			t.Errorf("playbook on %s: no final %s record", u.UserPrincipalName, a)
		case r.Outcome != audit.Succeeded:
			t.Errorf("playbook on %s: %s %s: %s", u.UserPrincipalName, a, r.Outcome, r.Detail)
		case r.EventID == "":
			t.Errorf("playbook on %s: %s record names no event", u.UserPrincipalName, a)
		}
	}
	su, _ := sim.User(u.ID)
	if su.AccountEnabled || su.RevokeCount != 1 {
		t.Errorf("user %s after the playbook: enabled %v, revoked %d times; want disabled, revoked once", u.UserPrincipalName, su.AccountEnabled, su.RevokeCount)
	}
}

// checkReplicas asserts every stream and the state bucket keep three replicas
// (an engine started with another --replicas would change them).
func checkReplicas(t *testing.T, ctx context.Context, js jetstream.JetStream, more ...string) {
	t.Helper()
	for _, name := range append([]string{bus.StreamEvents, bus.StreamActions, bus.StreamAudit, "KV_" + bus.BucketState}, more...) {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if n := s.CachedInfo().Config.Replicas; n != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, n)
		}
	}
}

func engineLogs(e *engineProc, name string) string {
	var out bytes.Buffer
	e.mu.Lock()
	starts := e.starts
	e.mu.Unlock()
	for i := 1; i <= starts; i++ {
		b, err := os.ReadFile(filepath.Join(e.logDir, fmt.Sprintf("engine-%02d.log", i)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(&out, "--- engine %s, start %d: %v ---\n", name, i, err)
			continue
		}
		fmt.Fprintf(&out, "--- engine %s, start %d ---\n%s\n", name, i, tail(b, 3000))
	}
	return out.String()
}

// checkQueueEmpty waits until nothing is left: the ACTIONS work queue is
// empty and the workers' consumer has nothing pending or unacknowledged (within
// 45 s: the AckWait and a margin). It is checkDrained for a cluster: each look
// uses a new connection with a short deadline, and a failure names the Raft
// groups' leaders. (The test's own
// connection, which lived through the failover, sometimes gets no answer to
// ACTIONS stream info for tens of seconds while new connections to the same
// servers get one at once; what is checked here is the servers' state.)
func checkQueueEmpty(t *testing.T, ctx context.Context, urls, tenant string, cl *bustest.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	consumer := actions.ConsumerName + "-" + bus.Token(tenant)
	look := func(ctx context.Context) (bool, string, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		nc, err := nats.Connect(urls, nats.Name("reliability-cluster-check"))
		if err != nil {
			return false, "connect: " + err.Error(), nil
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false, err.Error(), nil
		}
		s, err := js.Stream(ctx, bus.StreamActions)
		if err != nil {
			return false, "stream: " + err.Error(), nil
		}
		c, err := s.Consumer(ctx, consumer)
		if err != nil {
			return false, "consumer: " + err.Error(), nil
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return false, "consumer info: " + err.Error(), nil
		}
		st := s.CachedInfo().State
		return st.Msgs == 0 && ci.NumPending == 0 && ci.NumAckPending == 0,
			fmt.Sprintf("ACTIONS holds %d messages; consumer pending %d, unacknowledged %d, redelivered %d",
				st.Msgs, ci.NumPending, ci.NumAckPending, ci.NumRedelivered), nil
	}
	if err := pollUntil(ctx, "empty work queue", look); err != nil {
		var leaders []string
		for _, s := range cl.Running() {
			leaders = append(leaders, fmt.Sprintf("%s: meta %v, stream %v, consumer %v", s.Name(), s.JetStreamIsLeader(),
				s.JetStreamIsStreamLeader("$G", bus.StreamActions), s.JetStreamIsConsumerLeader("$G", bus.StreamActions, consumer)))
		}
		t.Errorf("%v\nleaders: %s\nNATS servers' warnings:\n%s", err, strings.Join(leaders, "; "), cl.Warnings(40))
	}
}
