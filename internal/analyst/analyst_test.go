package analyst

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

func TestCanonical(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "z" : [ 3 , {"y":true,"x":null} ] , "a":"" } `, `{"a":"","z":[3,{"x":null,"y":true}]}`},
		{`{"signature":"abc","a":1}`, `{"a":1}`},
		{`{"a":{"signature":"kept"}}`, `{"a":{"signature":"kept"}}`},
		{`{"n":[1.0,1.5,-0,1e21,1e-7,0.000001,100,12345678901234567890]}`, `{"n":[1,1.5,0,1e+21,1e-7,0.000001,100,12345678901234567000]}`},
		{`{"s":"\u00e9\u2028<>&\t\u0001\"\\/"}`, `{"s":"é` + "\u2028" + `<>&\t\u0001\"\\/"}`},
		// UTF-16 order: U+E000 sorts after U+1F600 (a surrogate pair) in UTF-16.
		{`{"\ue000":1,"😀":2}`, `{"😀":2,"` + "\ue000" + `":1}`},
	}
	for _, c := range cases {
		got, err := Canonical([]byte(c.in))
		if err != nil {
			t.Errorf("Canonical(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	for _, bad := range []string{`[1]`, `"s"`, `{"a":1}{}`, `{"a":1,"a":2}`, `{"Action":"x","action":"y"}`, "{\"a\":\"\xff\"}", `{"a":`, `{"a":1e400}`} {
		if _, err := Canonical([]byte(bad)); !errors.Is(err, ErrNotCanonicalizable) {
			t.Errorf("Canonical(%q) = %v, want ErrNotCanonicalizable", bad, err)
		}
	}
}

// The test vector of docs/action-requests.md: a client in another language
// checks its implementation against it (the Python snippet there reproduces it).
const (
	vectorSeed      = "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y"
	vectorPublic    = "UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"
	vectorBody      = `{"version":1,"id":"0f8e3a52-3c1b-4d5e-9a7b-2c6d8e1f4a90","action":"disable_user","target":{"user":"alice@contoso.com"},"requested_by":{"kind":"analyst","name":"alice","key_id":"UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"},"reason":"Impossible travel; user confirmed not them","ticket":"INC-42","requested_at":"2025-06-01T09:30:00Z"}`
	vectorCanonical = `{"action":"disable_user","id":"0f8e3a52-3c1b-4d5e-9a7b-2c6d8e1f4a90","reason":"Impossible travel; user confirmed not them","requested_at":"2025-06-01T09:30:00Z","requested_by":{"key_id":"UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK","kind":"analyst","name":"alice"},"target":{"user":"alice@contoso.com"},"ticket":"INC-42","version":1}`
	vectorSignature = "ShjkDgwiZOLAm5KRID0CBY1FvngUeS6b-TV2iptVyiWj7WkECpNG021jrNyP0sZ3K9XSRXFBVQwaDekFz4kfDg"
)

func TestDocsVector(t *testing.T) {
	kp, err := nkeys.FromSeed([]byte(vectorSeed))
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := kp.PublicKey(); pub != vectorPublic {
		t.Fatalf("public key %s, want %s", pub, vectorPublic)
	}
	c, err := Canonical([]byte(vectorBody))
	if err != nil || string(c) != vectorCanonical {
		t.Fatalf("canonical %s (%v)", c, err)
	}
	h, err := SignBody([]byte(vectorBody), kp)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Get(HeaderSignature); got != vectorSignature {
		t.Fatalf("signature %s, want %s (Ed25519 is deterministic)", got, vectorSignature)
	}
	if err := verifySignature([]byte(vectorBody), vectorPublic, vectorSignature); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "action-requests.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{vectorSeed, vectorPublic, vectorCanonical, vectorSignature, SigningPrefix[:len(SigningPrefix)-1], HeaderSignature, HeaderKey} {
		if !strings.Contains(string(doc), s) {
			t.Errorf("docs/action-requests.md does not show %q", s)
		}
	}
}

// fixture is a verifier on an embedded NATS with alice (disable_user only),
// bob (everything, may approve) and an engine key.
type fixture struct {
	v                  *Verifier
	alice, bob, engine nkeys.KeyPair
	outsider           nkeys.KeyPair
	now                time.Time
}

func pub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kv, err := EnsureReplayBucket(ctx, b.JS, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{now: time.Date(2025, 6, 1, 9, 30, 0, 0, time.UTC)}
	for _, p := range []*nkeys.KeyPair{&f.alice, &f.bob, &f.engine, &f.outsider} {
		if *p, err = NewKey(); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := NewDirectory(
		Analyst{Name: "alice", PublicKey: pub(t, f.alice), Actions: []string{"disable_user"}},
		Analyst{Name: "bob", PublicKey: pub(t, f.bob), Actions: []string{AllActions}, MayApprove: true},
		Analyst{Name: "engine-1", PublicKey: pub(t, f.engine), Role: RoleEngine},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.v, err = NewVerifier(VerifierConfig{Directory: func() *Directory { return dir }, Seen: kv, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) request(name string, action actions.Name) *actions.Request {
	return &actions.Request{
		Version: actions.Version, ID: uuid.NewString(), Action: action,
		Target:      actions.Target{User: "carol@contoso.com"},
		RequestedBy: audit.Actor{Kind: "analyst", Name: name},
		Reason:      "test", RequestedAt: f.now,
	}
}

// deliver decodes a signed message the way a worker would and verifies it.
func (f *fixture) deliver(t *testing.T, s Signed, seq uint64) (Analyst, error) {
	t.Helper()
	req, err := actions.Decode(s.Body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.v.Verify(ctx, req, Message{Data: s.Body, Header: s.Header, Seq: seq})
}

func sign(t *testing.T, req *actions.Request, kp nkeys.KeyPair) Signed {
	t.Helper()
	s, err := Sign(req, kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignedRequestAccepted(t *testing.T) {
	f := newFixture(t)
	req := f.request("alice", actions.DisableUser)
	s := sign(t, req, f.alice)
	a, err := f.deliver(t, s, 7)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if a.Name != "alice" || a.Actor() != (audit.Actor{Kind: "analyst", Name: "alice", KeyID: pub(t, f.alice)}) {
		t.Fatalf("analyst %+v", a)
	}
	// A redelivery of the same stored message (same stream sequence) passes.
	if _, err := f.deliver(t, s, 7); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	// Signature in the body instead of the headers (clients without headers).
	req2 := f.request("alice", actions.DisableUser)
	s2 := sign(t, req2, f.alice)
	var m map[string]any
	_ = json.Unmarshal(s2.Body, &m)
	m["signature"] = s2.Header.Get(HeaderSignature)
	body, _ := json.Marshal(m)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, req2, Message{Data: body, Seq: 8}); err != nil {
		t.Fatalf("signature in body: %v", err)
	}
	// A playbook request signed by the engine, and a relayed analyst step.
	pb := f.request("", actions.RevokeSessions)
	pb.RequestedBy = audit.Actor{Kind: "playbook", Name: "risky-user"}
	if _, err := f.deliver(t, sign(t, pb, f.engine), 9); err != nil {
		t.Fatalf("playbook request: %v", err)
	}
	relayed := f.request("alice", actions.RevokeSessions)
	relayed.RequestedBy.KeyID = pub(t, f.alice)
	rs, err := Relay(relayed, f.engine)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := f.deliver(t, rs, 10); err != nil || a.Role != RoleEngine {
		t.Fatalf("relayed request: %+v %v", a, err)
	}
}

func TestVerifyRejections(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name   string
		build  func() (Signed, uint64)
		reason Reason
		detail string
	}{
		{"unsigned", func() (Signed, uint64) {
			s := sign(t, f.request("alice", actions.DisableUser), f.alice)
			s.Header.Del(HeaderSignature)
			return s, 1
		}, Unsigned, "no Responder-Signature"},
		{"tampered body", func() (Signed, uint64) {
			s := sign(t, f.request("alice", actions.DisableUser), f.alice)
			s.Body = []byte(strings.Replace(string(s.Body), "carol@", "dave@", 1))
			return s, 2
		}, BadSignature, "does not verify"},
		{"signature by another key", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			s := sign(t, req, f.alice)
			other, _ := SignBody(s.Body, f.bob)
			s.Header.Set(HeaderSignature, other.Get(HeaderSignature))
			return s, 3
		}, BadSignature, "does not verify"},
		{"garbage signature", func() (Signed, uint64) {
			s := sign(t, f.request("alice", actions.DisableUser), f.alice)
			s.Header.Set(HeaderSignature, "!!!")
			return s, 4
		}, BadSignature, "base64"},
		{"unknown key", func() (Signed, uint64) {
			return sign(t, f.request("mallory", actions.DisableUser), f.outsider), 5
		}, UnknownKey, "not in the analysts file"},
		{"old timestamp", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			req.RequestedAt = f.now.Add(-6 * time.Minute)
			return sign(t, req, f.alice), 6
		}, Replayed, "outside ±5m0s"},
		{"future timestamp", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			req.RequestedAt = f.now.Add(6 * time.Minute)
			return sign(t, req, f.alice), 7
		}, Replayed, "outside"},
		{"action not allowed", func() (Signed, uint64) {
			return sign(t, f.request("alice", actions.RevokeSessions), f.alice), 8
		}, Unauthorised, "alice may not request revoke_sessions"},
		{"follow-up step not allowed", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			req.Next = []actions.Step{{Action: actions.RevokeSessions, Target: req.Target}}
			return sign(t, req, f.alice), 9
		}, Unauthorised, "next[0]"},
		{"name is not the key holder", func() (Signed, uint64) {
			return sign(t, f.request("bob", actions.DisableUser), f.alice), 10
		}, Unauthorised, `"bob" is not the key holder "alice"`},
		{"analyst posing as a playbook", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			req.RequestedBy = audit.Actor{Kind: "playbook", Name: "x"}
			return sign(t, req, f.alice), 11
		}, Unauthorised, "only an engine key may"},
		{"analyst relaying for another", func() (Signed, uint64) {
			req := f.request("alice", actions.DisableUser)
			req.RequestedBy.KeyID = pub(t, f.alice)
			s, _ := Relay(req, f.bob)
			return s, 12
		}, Unauthorised, "requested_by.key_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, seq := c.build()
			_, err := f.deliver(t, s, seq)
			if ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("got %v, want %s containing %q", err, c.reason, c.detail)
			}
			rec := RejectRecord("t1", nil, err)
			if rec.Outcome != audit.Rejected || !strings.HasPrefix(rec.Detail, string(c.reason)+": ") {
				t.Fatalf("record %+v", rec)
			}
		})
	}
	t.Run("reused id", func(t *testing.T) {
		req := f.request("alice", actions.DisableUser)
		s := sign(t, req, f.alice)
		if _, err := f.deliver(t, s, 100); err != nil {
			t.Fatal(err)
		}
		// The same bytes published again (a new stream sequence) are a replay,
		// and so is a fresh signature over the same id.
		if _, err := f.deliver(t, s, 101); ReasonOf(err) != Replayed || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("replay: %v", err)
		}
		again := *req
		again.Reason = "other"
		if _, err := f.deliver(t, sign(t, &again, f.alice), 0); ReasonOf(err) != Replayed {
			t.Fatalf("reused id: %v", err)
		}
	})
	t.Run("received time is the reference", func(t *testing.T) {
		req := f.request("alice", actions.DisableUser)
		req.RequestedAt = f.now.Add(-time.Hour)
		s := sign(t, req, f.alice)
		ctx := context.Background()
		if _, err := f.v.Verify(ctx, req, Message{Data: s.Body, Header: s.Header, Seq: 200, Received: req.RequestedAt.Add(time.Second)}); err != nil {
			t.Fatalf("backlogged request: %v", err)
		}
	})
	t.Run("errors carry no seed", func(t *testing.T) {
		seed, _ := f.alice.Seed()
		_, err := f.deliver(t, sign(t, f.request("alice", actions.RevokeSessions), f.alice), 300)
		if strings.Contains(err.Error(), string(seed)) {
			t.Fatal("seed in error")
		}
	})
}

func TestVerifyCommand(t *testing.T) {
	f := newFixture(t)
	body, _ := json.Marshal(map[string]any{"id": "c1", "op": "approve", "at": f.now})
	h, _ := SignBody(body, f.bob)
	ctx := context.Background()
	a, err := f.v.VerifyCommand(ctx, "c1", pub(t, f.bob), f.now, Message{Data: body, Header: h})
	if err != nil || a.Name != "bob" {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := f.v.VerifyCommand(ctx, "c1", pub(t, f.bob), f.now, Message{Data: body, Header: h}); ReasonOf(err) != Replayed {
		t.Fatalf("replayed command: %v", err)
	}
	if _, err := f.v.VerifyCommand(ctx, "c2", pub(t, f.alice), f.now, Message{Data: body, Header: h}); ReasonOf(err) != Unauthorised {
		t.Fatalf("body names another key: %v", err)
	}
	if _, err := f.v.VerifyCommand(ctx, "c3", "", f.now, Message{Data: body, Header: nats.Header{}}); ReasonOf(err) != Unsigned {
		t.Fatalf("unsigned command: %v", err)
	}
}

func TestParseDirectory(t *testing.T) {
	a, _ := NewKey()
	e, _ := NewKey()
	pa, pe := pub(t, a), pub(t, e)
	good := "version: 1\nanalysts:\n  - name: alice\n    public_key: " + pa + "\n    actions: [disable_user]\n    may_approve: true\nengines:\n  - name: eng\n    public_key: " + pe + "\n"
	d, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := d.Lookup(pa); !ok || got.Name != "alice" || !got.MayApprove || !got.Allowed("disable_user") || got.Allowed("revoke_sessions") {
		t.Fatalf("alice: %+v", got)
	}
	if got, _ := d.Lookup(pe); got.Role != RoleEngine {
		t.Fatalf("engine: %+v", got)
	}
	bad := map[string]string{
		"unknown field":  strings.Replace(good, "may_approve", "may_aprove", 1),
		"version":        strings.Replace(good, "version: 1", "version: 2", 1),
		"bad key":        strings.Replace(good, pa, "UABC", 1),
		"seed as key":    strings.Replace(good, pa, "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y", 1),
		"unknown action": strings.Replace(good, "[disable_user]", "[disable_usr]", 1),
		"no actions":     strings.Replace(good, "    actions: [disable_user]\n", "", 1),
		"duplicate key":  strings.Replace(good, pe, pa, 1),
		"duplicate name": strings.Replace(good, "name: eng", "name: ALICE", 1),
		"engine actions": good + "    actions: [disable_user]\n",
		"empty":          "",
		"two documents":  good + "---\nversion: 1\n",
	}
	for name, in := range bad {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "SUAAAA") {
			t.Errorf("%s: error echoes a seed: %v", name, err)
		}
	}
}

func TestLocalKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDefaultKey(dir); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key yet: %v", err)
	}
	kp, created, err := EnsureLocalAdmin(dir)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	st, err := os.Stat(AdminKeyPath(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	again, created, err := EnsureLocalAdmin(dir)
	if err != nil || created || pub(t, again) != pub(t, kp) {
		t.Fatalf("second: %v %v", created, err)
	}
	def, err := LoadDefaultKey(dir)
	if err != nil || pub(t, def) != pub(t, kp) {
		t.Fatalf("default: %v", err)
	}
	if err := WriteKeyFile(AdminKeyPath(dir), kp); err == nil {
		t.Fatal("overwrote a key file")
	}
	eng, _, err := EnsureEngineKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := LocalDirectory(pub(t, kp), pub(t, eng))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := ld.Lookup(pub(t, kp)); !a.MayApprove || !a.Allowed("anything") {
		t.Fatalf("local admin %+v", a)
	}
	if err := os.Chmod(AdminKeyPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	if _, err := ReadKeyFile(AdminKeyPath(dir)); err == nil || strings.Contains(err.Error(), string(seed)) {
		t.Fatalf("world-readable key: %v", err)
	}
	junk := filepath.Join(dir, "junk.nk")
	_ = os.WriteFile(junk, []byte("not a seed at all"), 0o600)
	if _, err := ReadKeyFile(junk); err == nil || strings.Contains(err.Error(), "not a seed at all") {
		t.Fatalf("junk: %v", err)
	}
	if !ValidName("alice.smith@contoso") || ValidName("../x") || ValidName("") {
		t.Fatal("ValidName")
	}
}
