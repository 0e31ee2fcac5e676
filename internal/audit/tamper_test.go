package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/bus"
)

// These tests play an attacker who has the engine's own access to NATS (they can
// publish to the AUDIT stream, delete and recreate it, write KV) but not the
// engine's key: each attempt must make verify fail, naming what was done.

func newKey(t testing.TB) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func pub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func trusted(t *testing.T, kps ...nkeys.KeyPair) Trusted {
	t.Helper()
	var keys []string
	for _, kp := range kps {
		keys = append(keys, pub(t, kp))
	}
	tr, err := NewTrusted(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// engineTrail is a bus with an engine writer that signs and keeps its head.
type engineTrail struct {
	b      *bus.Bus
	kv     jetstream.KeyValue
	engine nkeys.KeyPair
	keeper *HeadKeeper
	w      *Writer
	path   string
}

func newEngineTrail(t *testing.T) *engineTrail {
	t.Helper()
	ctx := testCtx(t)
	b := openBus(t)
	kv, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &engineTrail{b: b, kv: kv, engine: newKey(t), path: HeadPath(t.TempDir())}
	e.keeper = NewHeadKeeper(HeadKeeperConfig{Path: e.path, KV: kv, Signer: e.engine, Trusted: trusted(t, e.engine), Logger: quiet})
	if _, err := e.keeper.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e.w = NewWriter(b.JS, WriterOptions{Logger: quiet, Signer: e.engine, Head: e.keeper})
	return e
}

// anchors are the kept heads (file and KV) as the CLI reads them.
func (e *engineTrail) anchors(t *testing.T) []Anchor {
	t.Helper()
	var out []Anchor
	if h, ok, err := ReadHeadFile(e.path); err != nil || !ok {
		t.Fatalf("head file: %v, %v", ok, err)
	} else {
		out = append(out, AnchorFromHead(h, "the head file"))
	}
	if h, ok, err := ReadHeadKV(testCtx(t), e.kv); err != nil || !ok {
		t.Fatalf("KV head: %v, %v", ok, err)
	} else {
		out = append(out, AnchorFromHead(h, "the KV head"))
	}
	return out
}

func (e *engineTrail) verify(t *testing.T, anchors ...Anchor) VerifyResult {
	t.Helper()
	res, err := VerifyStream(testCtx(t), e.b.JS, VerifyOptions{Trusted: trusted(t, e.engine), Anchors: anchors})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSignedTrailVerifies(t *testing.T) {
	ctx := testCtx(t)
	e := newEngineTrail(t)
	recs := appendN(t, ctx, e.w, 6)
	for _, r := range recs {
		if r.Signer != pub(t, e.engine) || r.Sig == "" {
			t.Fatalf("record %d not signed: %+v", r.Seq, r)
		}
	}
	if err := e.keeper.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	anchors := e.anchors(t)
	if anchors[0].Seq != 6 || anchors[0].Hash != recs[5].Hash || anchors[1] != anchors[0] && anchors[1].Hash != recs[5].Hash {
		t.Fatalf("kept heads %+v, want seq 6 %s", anchors, recs[5].Hash)
	}
	res := e.verify(t, anchors...)
	if !res.OK || res.Records != 6 || res.Signed != 6 || res.Anchors != 2 || res.LastHash != recs[5].Hash {
		t.Fatalf("VerifyStream = %+v", res)
	}
	// A second engine of the cluster, trusted too, continues the chain.
	other := newKey(t)
	appendN(t, ctx, NewWriter(e.b.JS, WriterOptions{Logger: quiet, Signer: other}), 2)
	res, err := VerifyStream(ctx, e.b.JS, VerifyOptions{Trusted: trusted(t, e.engine, other), Anchors: anchors})
	if err != nil || !res.OK || res.Records != 8 {
		t.Fatalf("two trusted engines: %+v, %v", res, err)
	}
	// Without the trusted keys, the strict check refuses to run.
	if _, err := VerifyStream(ctx, e.b.JS, VerifyOptions{}); err == nil {
		t.Fatal("VerifyStream with no trusted key did not fail")
	}
}

// An attacker appends a valid-looking, hash-chained record straight to the stream.
func TestVerifyFailsOnARecordAppendedByANonEngineKey(t *testing.T) {
	tests := []struct {
		name   string
		forge  func(t *testing.T, e *engineTrail, r *Record)
		reason string
	}{
		{"signed by another key", func(t *testing.T, _ *engineTrail, r *Record) {
			kp := newKey(t)
			r.Signer = pub(t, kp)
			r.Hash, _ = r.ComputeHash()
			if err := signRecord(kp, r); err != nil {
				t.Fatal(err)
			}
		}, "not a trusted engine key"},
		{"no signature", func(t *testing.T, _ *engineTrail, r *Record) {
			r.Hash, _ = r.ComputeHash()
		}, "no signature"},
		{"claims the engine, signed by another key", func(t *testing.T, e *engineTrail, r *Record) {
			r.Signer = pub(t, e.engine)
			r.Hash, _ = r.ComputeHash()
			if err := signRecord(newKey(t), r); err != nil {
				t.Fatal(err)
			}
		}, "does not verify"},
		{"the engine's signature of another record", func(t *testing.T, e *engineTrail, r *Record) {
			first := all(t, testCtx(t), e.b.JS)[0]
			r.Signer = pub(t, e.engine)
			r.Hash, _ = r.ComputeHash()
			r.Sig = first.Sig
		}, "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			e := newEngineTrail(t)
			recs := appendN(t, ctx, e.w, 3)
			// The forger uses a connection of its own and chains to the tail.
			js := connect(t, e.b)
			r := sample(9)
			r.ID, r.Time, r.Seq, r.PrevHash = "forged-approval", recs[2].Time.Add(time.Second), 4, recs[2].Hash
			r.Outcome, r.Detail = Succeeded, "nothing to see here"
			r, err := normalize(r)
			if err != nil {
				t.Fatal(err)
			}
			tt.forge(t, e, &r)
			data, _ := json.Marshal(r)
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: bus.AuditSubject(r.TenantID, string(r.Outcome), r.Action), Data: data},
				jetstream.WithExpectLastSequence(3)); err != nil {
				t.Fatal(err)
			}
			// The chain-only check cannot tell: the record is well formed.
			if res, err := Verify(ctx, e.b.JS); err != nil || !res.OK {
				t.Fatalf("chain-only Verify = %+v, %v (the forgery is meant to be well chained)", res, err)
			}
			res := e.verify(t)
			if res.OK || res.BadSeq != 4 || res.FirstBad == nil || res.FirstBad.ID != "forged-approval" || !strings.Contains(res.Reason, tt.reason) || !strings.Contains(res.Reason, "not appended by a trusted engine") {
				t.Fatalf("VerifyStream = %+v (%s); want the forged record at seq 4 named for %q", res, res.Reason, tt.reason)
			}
			if res.LastSeq != 3 || res.Signed != 3 {
				t.Errorf("last good seq %d, %d signed; want 3 and 3", res.LastSeq, res.Signed)
			}
		})
	}
}

// An attacker deletes the AUDIT stream and recreates it: empty, with a fresh
// chain, or starting after the old last sequence so that the engine's next
// record seems to follow on.
func TestVerifyDetectsAWipedAndRecreatedStream(t *testing.T) {
	wipe := func(t *testing.T, e *engineTrail, firstSeq uint64) {
		t.Helper()
		ctx := testCtx(t)
		info, err := e.b.JS.Stream(ctx, bus.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.CachedInfo().Config
		cfg.FirstSeq = firstSeq
		// Under load the server can answer the create before the deleted
		// stream's messages are gone from it: recreate until the new stream
		// is really empty (bounded), so the test sees the attack it means.
		for attempt := 1; ; attempt++ {
			if err := e.b.JS.DeleteStream(ctx, bus.StreamAudit); err != nil {
				t.Fatal(err)
			}
			st, err := e.b.JS.CreateStream(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			si, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if si.State.Msgs == 0 {
				return
			}
			if attempt == 5 {
				t.Fatalf("the recreated stream still holds %d messages", si.State.Msgs)
			}
		}
	}
	setup := func(t *testing.T) (*engineTrail, []Record, []Anchor) {
		t.Helper()
		ctx := testCtx(t)
		e := newEngineTrail(t)
		recs := appendN(t, ctx, e.w, 5)
		if err := e.keeper.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return e, recs, e.anchors(t)
	}

	t.Run("empty", func(t *testing.T) {
		e, _, anchors := setup(t)
		wipe(t, e, 0)
		res := e.verify(t, anchors...)
		if res.OK || !strings.Contains(res.Reason, "ends at seq 0") || !strings.Contains(res.Reason, "record 5") {
			t.Fatalf("VerifyStream = %+v (%s)", res, res.Reason)
		}
		// The engine refuses to bury the evidence under a new chain.
		if _, err := e.w.Append(testCtx(t), sample(0)); !errors.Is(err, ErrHeadMismatch) {
			t.Fatalf("Append after the wipe = %v, want ErrHeadMismatch", err)
		}
		if n := len(all(t, testCtx(t), e.b.JS)); n != 0 {
			t.Fatalf("%d records appended after the wipe", n)
		}
	})
	for _, n := range []int{3, 7} {
		t.Run("fresh chain of "+string(rune('0'+n)), func(t *testing.T) {
			e, _, anchors := setup(t)
			wipe(t, e, 0)
			// Worst case: the fresh chain is even signed by an engine (one that
			// does not keep the head).
			appendN(t, testCtx(t), NewWriter(e.b.JS, WriterOptions{Logger: quiet, Signer: e.engine}), n)
			if res, _ := Verify(testCtx(t), e.b.JS); !res.OK {
				t.Fatalf("the fresh chain is meant to check on its own: %+v", res)
			}
			res := e.verify(t, anchors...)
			want := "ends at seq 3"
			if n == 7 {
				want = "record 5 has hash"
			}
			if res.OK || !strings.Contains(res.Reason, want) || !strings.Contains(res.Reason, "the head file") {
				t.Fatalf("VerifyStream = %+v (%s), want %q", res, res.Reason, want)
			}
			// Each kept head is enough alone.
			if res := e.verify(t, anchors[1]); res.OK || !strings.Contains(res.Reason, "the KV head") {
				t.Fatalf("with the KV head only: %+v", res)
			}
		})
	}
	t.Run("restarted after the old last sequence", func(t *testing.T) {
		e, _, anchors := setup(t)
		wipe(t, e, 6)
		// An engine (re)started on it refuses to append: its kept head cannot
		// have aged out yet.
		restarted := NewWriter(e.b.JS, WriterOptions{Logger: quiet, Signer: e.engine, Head: e.keeper})
		if _, err := restarted.Append(testCtx(t), sample(0)); !errors.Is(err, ErrHeadMismatch) || !strings.Contains(err.Error(), "too recent to have aged out") {
			t.Fatalf("Append = %v, want ErrHeadMismatch for a head too recent to have aged out", err)
		}
		// A running writer whose cached tail still fits the stream's last
		// sequence goes on, linked to the old head: verify sees that the head
		// is too recent to have aged out.
		if _, err := e.w.Append(testCtx(t), sample(1)); err != nil {
			t.Fatal(err)
		}
		res := e.verify(t, anchors...)
		if res.OK || !strings.Contains(res.Reason, "too recent to have aged out") {
			t.Fatalf("VerifyStream = %+v (%s)", res, res.Reason)
		}
		// Ten years on, the same trail is what retention leaves behind.
		later, err := VerifyStream(testCtx(t), e.b.JS, VerifyOptions{Trusted: trusted(t, e.engine), Anchors: anchors,
			Now: func() time.Time { return time.Now().AddDate(10, 0, 0) }})
		if err != nil || !later.OK || later.FirstSeq != 6 {
			t.Fatalf("after retention: %+v, %v", later, err)
		}

		// A writer that keeps no head starts a chain there with no link: the
		// first record's link is missing.
		wipe(t, e, 6)
		appendN(t, testCtx(t), NewWriter(e.b.JS, WriterOptions{Logger: quiet, Signer: e.engine}), 2)
		res = e.verify(t)
		if res.OK || res.BadSeq != 6 || !strings.Contains(res.Reason, "link to the record before it is missing") {
			t.Fatalf("VerifyStream = %+v (%s)", res, res.Reason)
		}
	})
}

// The kept head moves with the trail, written by Run, and a head that is not
// signed by a trusted engine is refused (file) or ignored (KV).
func TestHeadKeeper(t *testing.T) {
	ctx := testCtx(t)
	e := newEngineTrail(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.keeper.Run(runCtx) }()
	recs := appendN(t, ctx, e.w, 4)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h, ok, err := ReadHeadFile(e.path)
	if err != nil || !ok || h.Seq != 4 || h.Hash != recs[3].Hash || !h.RecordTime.Equal(recs[3].Time) {
		t.Fatalf("head file after Run = %+v, %v, %v", h, ok, err)
	}
	if err := trusted(t, e.engine).VerifyHead(h); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(e.path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("head file mode: %v, %v", fi.Mode(), err)
	}
	kvh, ok, err := ReadHeadKV(ctx, e.kv)
	if err != nil || !ok || kvh.Seq != 4 {
		t.Fatalf("KV head = %+v, %v, %v", kvh, ok, err)
	}

	// An attacker on the bus writes a head of their own into KV: ignored.
	forged, _ := SignHead(newKey(t), Record{Seq: 99, Hash: strings.Repeat("a", 64), Time: time.Now()}, time.Now())
	if _, err := e.kv.Put(ctx, HeadKey, forged.Marshal()); err != nil {
		t.Fatal(err)
	}
	k2 := NewHeadKeeper(HeadKeeperConfig{Path: e.path, KV: e.kv, Signer: e.engine, Trusted: trusted(t, e.engine), Logger: quiet})
	got, err := k2.Load(ctx)
	if err != nil || got.Seq != 4 {
		t.Fatalf("Load with a forged KV head = %+v, %v, want the file's seq 4", got, err)
	}
	// ... and verify names it.
	res := e.verify(t, AnchorFromHead(forged, "the KV head"))
	if res.OK {
		t.Fatal("verify passed with a forged KV head that the chain does not reach")
	}
	// The same in the engine's own head file stops the engine from starting.
	if err := os.WriteFile(e.path, forged.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	k3 := NewHeadKeeper(HeadKeeperConfig{Path: e.path, Signer: e.engine, Trusted: trusted(t, e.engine), Logger: quiet})
	if _, err := k3.Load(ctx); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Load with a forged head file = %v, want ErrUntrusted", err)
	}
}

// Exports end with a signed head; dropping records before it, or the head
// itself, fails; so does an --expect-head the chain does not contain.
func TestSignedExport(t *testing.T) {
	ctx := testCtx(t)
	e := newEngineTrail(t)
	recs := appendN(t, ctx, e.w, 8)
	if err := e.keeper.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	head, ok, err := ReadHeadKV(ctx, e.kv)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	appendN(t, ctx, e.w, 2) // after the head: left to the next export
	var buf bytes.Buffer
	if err := ExportSigned(ctx, e.b.JS, Filter{}, FormatJSONL, head, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 9 || !strings.HasPrefix(lines[8], `{"type":"audit_head","seq":8,`) {
		t.Fatalf("export: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	opts := VerifyOptions{Trusted: trusted(t, e.engine)}
	check := func(lines []string, opts VerifyOptions) VerifyResult {
		t.Helper()
		res, err := VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), opts)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := check(lines, opts); !res.OK || res.Records != 8 || res.Head == nil || res.LastHash != recs[7].Hash {
		t.Fatalf("VerifyExport(clean) = %+v", res)
	}
	// The chain-only reader accepts the head line too.
	if res, err := VerifyReader(strings.NewReader(buf.String())); err != nil || !res.OK || res.Records != 8 {
		t.Fatalf("VerifyReader(signed export) = %+v, %v", res, err)
	}
	withAnchor := func(a string) VerifyOptions {
		an, err := ParseAnchor(a, "--expect-head")
		if err != nil {
			t.Fatal(err)
		}
		return VerifyOptions{Trusted: opts.Trusted, Anchors: []Anchor{an}}
	}
	if res := check(lines, withAnchor(recs[4].Hash)); !res.OK || res.Anchors != 1 {
		t.Fatalf("--expect-head of record 5: %+v", res)
	}
	if res := check(lines, withAnchor("5:"+recs[4].Hash)); !res.OK || res.Anchors != 1 {
		t.Fatalf("--expect-head 5:hash: %+v", res)
	}

	otherHead, _ := SignHead(newKey(t), recs[7], time.Now())
	tests := []struct {
		name   string
		edit   func([]string) []string
		opts   VerifyOptions
		reason string
	}{
		{"tail truncated, head kept", func(l []string) []string { return append(slices.Clone(l[:6]), l[8]) }, opts, "records 7..8 are dropped"},
		{"tail truncated with the head", func(l []string) []string { return l[:6] }, opts, "without a signed head"},
		{"head line removed", func(l []string) []string { return l[:8] }, opts, "without a signed head"},
		{"middle record dropped", func(l []string) []string { return slices.Delete(slices.Clone(l), 3, 4) }, opts, "record 4 is missing"},
		{"head signed by another key", func(l []string) []string { return append(slices.Clone(l[:8]), string(otherHead.Marshal())) }, opts, "head was not signed by a trusted engine"},
		{"head moved back with the tail cut", func(l []string) []string {
			h := head
			h.Seq, h.Hash = 6, recs[5].Hash // the signature no longer matches
			return append(slices.Clone(l[:6]), string(h.Marshal()))
		}, opts, "does not verify"},
		{"record after the head", func(l []string) []string { return append(slices.Clone(l), l[7]) }, opts, "follows the export's head"},
		{"two heads", func(l []string) []string { return append(slices.Clone(l), l[8]) }, opts, "second head"},
		{"--expect-head with a wrong hash", func(l []string) []string { return l }, withAnchor(strings.Repeat("ab", 32)), "no record has hash"},
		{"--expect-head seq:hash mismatched", func(l []string) []string { return l }, withAnchor("5:" + recs[3].Hash), "record 5 has hash"},
		{"--expect-head beyond the export", func(l []string) []string { return l }, withAnchor("9:" + recs[3].Hash), "ends at seq 8"},
		{"a record of another key", func(l []string) []string {
			out := slices.Clone(l)
			out[7] = rehash(t, out[7], func(r *Record) { r.Signer = pub(t, newKey(t)) })
			return out
		}, opts, "not appended by a trusted engine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(tt.edit(slices.Clone(lines)), tt.opts)
			if res.OK || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("VerifyExport = %+v (%s), want a failure with %q", res, res.Reason, tt.reason)
			}
		})
	}
	if _, err := ParseAnchor("not-a-hash", "x"); err == nil {
		t.Error("ParseAnchor accepted a non-hash")
	}
	if err := ExportSigned(ctx, e.b.JS, Filter{}, FormatJSONL, Head{}, &buf); err == nil {
		t.Error("ExportSigned without a head did not fail")
	}
}

// A trail begun before records were signed verifies with UnsignedPrefix; an
// unsigned record after the first signed one still fails.
func TestUnsignedPrefix(t *testing.T) {
	ctx := testCtx(t)
	e := newEngineTrail(t)
	appendN(t, ctx, NewWriter(e.b.JS, WriterOptions{Logger: quiet}), 3) // before the upgrade
	appendN(t, ctx, e.w, 3)
	strict := e.verify(t)
	if strict.OK || strict.BadSeq != 1 || !strings.Contains(strict.Reason, "no signature") {
		t.Fatalf("strict verify of a trail begun unsigned = %+v", strict)
	}
	opts := VerifyOptions{Trusted: trusted(t, e.engine), UnsignedPrefix: true}
	res, err := VerifyStream(ctx, e.b.JS, opts)
	if err != nil || !res.OK || res.Unsigned != 3 || res.Signed != 3 {
		t.Fatalf("VerifyStream(UnsignedPrefix) = %+v, %v", res, err)
	}
	appendN(t, ctx, NewWriter(e.b.JS, WriterOptions{Logger: quiet}), 1) // an unsigned record appended later
	res, err = VerifyStream(ctx, e.b.JS, opts)
	if err != nil || res.OK || res.BadSeq != 7 || !strings.Contains(res.Reason, "no signature") {
		t.Fatalf("VerifyStream(UnsignedPrefix) with an unsigned record after signed ones = %+v, %v", res, err)
	}
}
