package matcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

const mfaThenSuccess = `name: mfa-then-success
enabled: true
trigger:
  source: signin
  kind: failure
  when:
    - {field: raw.status.errorCode, equals: 500121}
  threshold:
    count: 10
    by: user
    window: 10m
    then: {kind: success}
steps: [{action: revoke_sessions}]
---
name: spray-by-ip
enabled: true
trigger:
  source: signin
  kind: failure
  threshold: {count: 20, distinct: user, by: ip, window: 10m}
steps: [{action: block_ip, dry_run: true}]
`

func signinEnv(id, user, ip string, code int, at time.Time) *event.Envelope {
	kind := event.KindSignInSuccess
	if code != 0 {
		kind = event.KindSignInFailure
	}
	raw := fmt.Sprintf(`{"id":%q,"createdDateTime":%q,"userPrincipalName":%q,"ipAddress":%q,"status":{"errorCode":%d}}`, id, at.Format(time.RFC3339), user, ip, code)
	return &event.Envelope{ID: id, Source: event.SourceSignIn, Kind: kind, Time: at, User: user, IP: ip, Raw: json.RawMessage(raw)}
}

func names(ms []playbook.Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Playbook)
	}
	return out
}

// TestKVCounter: state survives a restart of the server, and two matchers on
// two connections count together exactly.
func TestKVCounter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	set, err := playbook.Load("t.yaml", []byte(mfaThenSuccess), playbook.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := startKV(t, dir)
	c := &KVCounter{KV: n.kv}
	for i := range 10 {
		if ms, err := set.MatchStateful(ctx, signinEnv(fmt.Sprint("d", i), "alice@contoso.com", "198.51.100.1", 500121, t0.Add(time.Duration(i)*time.Second)), c); err != nil || len(ms) != 0 {
			t.Fatalf("denial %d: %v %v", i, names(ms), err)
		}
	}
	n.stop()
	n = startKV(t, dir)
	defer n.stop()
	c = &KVCounter{KV: n.kv}
	ms, err := set.MatchStateful(ctx, signinEnv("ok", "alice@contoso.com", "198.51.100.1", 0, t0.Add(time.Minute)), c)
	if err != nil || len(ms) != 1 || ms[0].Playbook != "mfa-then-success" {
		t.Fatalf("after restart: %v %v", names(ms), err)
	}
	// Redelivery of the firing event fires again (same request ids downstream).
	if ms, _ := set.MatchStateful(ctx, signinEnv("ok", "alice@contoso.com", "198.51.100.1", 0, t0.Add(time.Minute)), c); len(ms) != 1 {
		t.Errorf("redelivery: %v", names(ms))
	}

	// Two matchers, two connections, 2 x 50 distinct-user failures from one IP
	// with a count of 20: exactly 5 fires.
	kv2 := n.connect(t)
	var fires atomic.Int32
	var wg sync.WaitGroup
	for w, counter := range []playbook.Counter{&KVCounter{KV: n.kv}, &KVCounter{KV: kv2}} {
		wg.Go(func() {
			for i := range 50 {
				k := w*50 + i
				env := signinEnv(fmt.Sprint("c", k), fmt.Sprintf("u%d@contoso.com", k), "203.0.113.50", 50126, t0.Add(time.Duration(k)*time.Second))
				ms, err := set.MatchStateful(ctx, env, counter)
				if err != nil {
					t.Error(err)
					return
				}
				fires.Add(int32(len(ms)))
			}
		})
	}
	wg.Wait()
	if got := fires.Load(); got != 5 {
		t.Errorf("concurrent matchers fired %d times, want 5", got)
	}
}

// TestKVCounterUnreadableStateRestarts: a threshold value nobody can read (a
// foreign write into the bucket) restarts the count instead of failing every
// event of that key.
func TestKVCounterUnreadableStateRestarts(t *testing.T) {
	ctx := context.Background()
	n := startKV(t, t.TempDir())
	defer n.stop()
	set, err := playbook.Load("t.yaml", []byte(mfaThenSuccess), playbook.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &KVCounter{KV: n.kv}
	if _, err := set.MatchStateful(ctx, signinEnv("d0", "bob@contoso.com", "198.51.100.2", 500121, t0), c); err != nil {
		t.Fatal(err)
	}
	keys, err := n.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for k := range keys.Keys() {
		if _, err := n.kv.Put(ctx, k, []byte("garbage")); err != nil {
			t.Fatal(err)
		}
		found++
	}
	if found == 0 {
		t.Fatal("no threshold key stored")
	}
	if _, err := set.MatchStateful(ctx, signinEnv("d1", "bob@contoso.com", "198.51.100.2", 500121, t0.Add(time.Second)), c); err != nil {
		t.Fatalf("unreadable state: %v", err)
	}
}
