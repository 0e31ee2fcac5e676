package playbook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func TestThresholdApply(t *testing.T) {
	obs := func(id string, sec int, val string) Observation {
		return Observation{Playbook: "p", Key: "k", EventID: id, Time: t0.Add(time.Duration(sec) * time.Second), Value: val, Count: 3, Window: time.Minute}
	}
	var st ThresholdState
	steps := []struct {
		o    Observation
		fire bool
		n    int
	}{
		{obs("a", 0, ""), false, 1},
		{obs("a", 0, ""), false, 1}, // same event again: not counted twice
		{obs("b", 30, ""), false, 2},
		{obs("c", 61, ""), false, 2}, // a slid out of the window
		{obs("d", 62, ""), true, 3},  // b, c, d
		{obs("d", 62, ""), true, 3},  // redelivery of the firing event fires again
		{obs("e", 63, ""), false, 1}, // reset after firing
	}
	for i, s := range steps {
		fire, n, _ := st.Apply(s.o)
		if fire != s.fire || n != s.n {
			t.Errorf("step %d: fire %v n %d, want %v %d", i, fire, n, s.fire, s.n)
		}
	}
	// distinct: the same value twice counts once.
	st = ThresholdState{}
	for i, v := range []string{"u1", "u1", "u2", "u1"} {
		o := obs(fmt.Sprint("x", i), i, v)
		o.Distinct = true
		if fire, _, _ := st.Apply(o); fire {
			t.Errorf("distinct fired at %d", i)
		}
	}
	o := obs("x9", 9, "u3")
	o.Distinct = true
	if fire, n, _ := st.Apply(o); !fire || n != 3 {
		t.Errorf("distinct: %v %d", fire, n)
	}
	// then: counting arms, the follow-up fires within the window only.
	st = ThresholdState{}
	for i := 0; i < 3; i++ {
		o := obs(fmt.Sprint("f", i), i, "")
		o.Then = true
		if fire, _, _ := st.Apply(o); fire {
			t.Error("then: counting fired")
		}
	}
	late := obs("s1", 200, "")
	late.Then, late.FollowUp = true, true
	if fire, _, _ := st.Apply(late); fire {
		t.Error("then: follow-up after the window fired")
	}
	st = ThresholdState{}
	for i := 0; i < 3; i++ {
		o := obs(fmt.Sprint("g", i), i, "")
		o.Then = true
		st.Apply(o)
	}
	in := obs("s2", 30, "")
	in.Then, in.FollowUp = true, true
	if fire, n, _ := st.Apply(in); !fire || n != 3 {
		t.Errorf("then: follow-up in the window: %v %d", fire, n)
	}
	if len(st.Entries) != 0 {
		t.Error("then: not reset")
	}
}

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

func TestMatchStateful(t *testing.T) {
	set, err := Load("t.yaml", []byte(mfaThenSuccess), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !set.Stateful() {
		t.Fatal("not stateful")
	}
	ctx := context.Background()
	if _, err := set.MatchStateful(ctx, signinEnv("z", "a@contoso.com", "192.0.2.1", 0, t0), nil); err == nil {
		t.Error("no counter: want error")
	}
	c := NewMemCounter()
	var fires []string
	run := func(env *event.Envelope) {
		if ms, _ := set.Match(env); len(ms) != 0 {
			t.Errorf("Match fired a threshold playbook: %v", names(ms))
		}
		ms, err := set.MatchStateful(ctx, env, c)
		if err != nil {
			t.Errorf("%s: %v", env.ID, err)
		}
		for _, m := range ms {
			fires = append(fires, env.ID+":"+m.Playbook)
			if m.Threshold == nil || !strings.Contains(m.Reason, "within 10m") {
				t.Errorf("reason %q", m.Reason)
			}
		}
	}
	// 10 denials for alice, then a success: fires on the success.
	for i := 0; i < 10; i++ {
		run(signinEnv(fmt.Sprint("d", i), "alice@contoso.com", "198.51.100.1", 500121, t0.Add(time.Duration(i)*time.Second)))
	}
	run(signinEnv("ok1", "bob@contoso.com", "198.51.100.2", 0, t0.Add(20*time.Second))) // another user
	run(signinEnv("ok2", "Alice@contoso.com", "198.51.100.1", 0, t0.Add(30*time.Second)))
	run(signinEnv("ok3", "alice@contoso.com", "198.51.100.1", 0, t0.Add(40*time.Second))) // reset: no second fire
	// 20 distinct users failing from one IP within 10 minutes (the 21st is a repeat).
	for i := 0; i < 21; i++ {
		u := fmt.Sprintf("u%d@contoso.com", i%20)
		if i == 20 {
			u = "u0@contoso.com"
		}
		run(signinEnv(fmt.Sprint("s", i), u, "203.0.113.9", 50126, t0.Add(time.Duration(i)*20*time.Second)))
	}
	want := "ok2:mfa-then-success s19:spray-by-ip"
	if got := strings.Join(fires, " "); got != want {
		t.Errorf("fires %q, want %q", got, want)
	}
}

func TestThresholdLoadErrors(t *testing.T) {
	for name, th := range map[string]string{
		"no count":     "{by: user, window: 10m}",
		"zero count":   "{count: 0, by: user, window: 10m}",
		"huge count":   "{count: 100000, by: user, window: 10m}",
		"no by":        "{count: 3, window: 10m}",
		"bad by":       "{count: 3, by: nosuch, window: 10m}",
		"bad window":   "{count: 3, by: user, window: forever}",
		"unknown":      "{count: 3, by: user, window: 10m, sliding: true}",
		"empty then":   "{count: 3, by: user, window: 10m, then: {}}",
		"bad distinct": "{count: 3, by: user, window: 10m, distinct: nope}",
	} {
		src := "name: a\nenabled: true\ntrigger: {source: signin, threshold: " + th + "}\nsteps: [{action: revoke_sessions}]\n"
		if _, err := Load("x.yaml", []byte(src), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "x.yaml:3") {
			t.Errorf("%s: want an error at x.yaml:3, got %v", name, err)
		}
	}
}

// TestMemCounterForgetsExpiredKeys: a long run over many distinct keys keeps
// only the keys active within their windows, and a key that comes back after
// its state was dropped counts from zero, as it would have anyway.
func TestMemCounterForgetsExpiredKeys(t *testing.T) {
	set, err := Load("t.yaml", []byte(mfaThenSuccess), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := NewMemCounter()
	const n = 50000
	for i := 0; i < n; i++ {
		// One denial per user, a new user every second: each user's state
		// expires 10 minutes later.
		at := t0.Add(time.Duration(i) * time.Second)
		env := signinEnv(fmt.Sprint("d", i), fmt.Sprintf("u%d@contoso.com", i), "198.51.100.1", 500121, at)
		if _, err := set.MatchStateful(ctx, env, c); err != nil {
			t.Fatal(err)
		}
	}
	// At most the keys of the last two windows (20 minutes = 1,200 users)
	// plus one sweep interval's worth.
	if k := c.Keys(); k > 2*600+memSweepEvery {
		t.Errorf("%d keys held after %d distinct users, want at most %d", k, n, 2*600+memSweepEvery)
	}
	if k := c.Keys(); k < 600 {
		t.Errorf("%d keys held: the keys still inside their window were dropped", k)
	}
	// Ten denials then a success for the last user still fire.
	last := t0.Add(n * time.Second)
	var fired bool
	for i := 0; i < 10; i++ {
		env := signinEnv(fmt.Sprint("x", i), "late@contoso.com", "198.51.100.1", 500121, last.Add(time.Duration(i)*time.Second))
		if _, err := set.MatchStateful(ctx, env, c); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := set.MatchStateful(ctx, signinEnv("ok", "late@contoso.com", "198.51.100.1", 0, last.Add(20*time.Second)), c)
	if err != nil {
		t.Fatal(err)
	}
	fired = len(ms) == 1
	if !fired {
		t.Errorf("the threshold did not fire after the sweeps: %v", names(ms))
	}
}
