package audit

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// rehash re-encodes a record line after edit changed it, with a hash that matches
// the new content (a tamperer who knows the scheme).
func rehash(t *testing.T, line string, edit func(*Record)) string {
	t.Helper()
	var r Record
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	h, err := r.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	r.Hash = h
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyReaderDetectsTampering(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	recs := appendN(t, ctx, w, 8)
	live, err := Verify(ctx, b.JS)
	if err != nil || !live.OK {
		t.Fatalf("Verify = %+v, %v", live, err)
	}
	lines := exportLines(t, ctx, b.JS, Filter{})
	if len(lines) != 8 {
		t.Fatalf("export has %d lines, want 8", len(lines))
	}

	tests := []struct {
		name     string
		edit     func([]string) []string
		badLine  int    // 0: the export must verify
		reason   string // part of the reason
		lastHash string // for the ones that verify
	}{
		{name: "clean export", edit: func(l []string) []string { return l }, lastHash: recs[7].Hash},
		{name: "CRLF and blank lines", edit: func(l []string) []string {
			out := []string{""}
			for _, s := range l {
				out = append(out, s+"\r", "")
			}
			return out
		}, lastHash: recs[7].Hash},
		{name: "change a field", badLine: 4, reason: "hash mismatch", edit: func(l []string) []string {
			l[3] = strings.Replace(l[3], `"detail":"record 3"`, `"detail":"record 3 (nothing happened)"`, 1)
			return l
		}},
		{name: "change a field and its hash", badLine: 5, reason: "prev_hash", edit: func(l []string) []string {
			l[3] = rehash(t, l[3], func(r *Record) { r.Outcome = Failed })
			return l
		}},
		{name: "drop a record", badLine: 4, reason: "record 4 is missing", edit: func(l []string) []string {
			return slices.Delete(l, 3, 4)
		}},
		{name: "drop the first record", badLine: 1, reason: "starts at seq 2", edit: func(l []string) []string {
			return l[1:]
		}},
		{name: "swap two records", badLine: 4, reason: "out of place", edit: func(l []string) []string {
			l[3], l[4] = l[4], l[3]
			return l
		}},
		{name: "repeat a record", badLine: 5, reason: "out of order", edit: func(l []string) []string {
			return slices.Insert(l, 4, l[3])
		}},
		{name: "renumber a record", badLine: 4, reason: "prev_hash", edit: func(l []string) []string {
			// Take out record 4, renumber the rest and rehash each: the link from
			// the renumbered record to record 3 still fails.
			l = slices.Delete(l, 3, 4)
			for i := 3; i < len(l); i++ {
				l[i] = rehash(t, l[i], func(r *Record) { r.Seq-- })
			}
			return l
		}},
		{name: "reformatted line", badLine: 2, reason: "canonical", edit: func(l []string) []string {
			l[1] = strings.Replace(l[1], `,"seq":`, `, "seq":`, 1)
			return l
		}},
		{name: "duplicate key shadowing a field", badLine: 2, reason: "canonical", edit: func(l []string) []string {
			l[1] = `{"detail":"nothing to see",` + l[1][1:]
			return l
		}},
		{name: "unknown field", badLine: 3, reason: "unknown field", edit: func(l []string) []string {
			l[2] = `{"note":"added later",` + l[2][1:]
			return l
		}},
		{name: "truncated line", badLine: 6, reason: "not an audit record", edit: func(l []string) []string {
			l[5] = l[5][:len(l[5])/2]
			return l
		}},
		{name: "first record given a prev_hash", badLine: 1, reason: "first record of the chain", edit: func(l []string) []string {
			l[0] = rehash(t, l[0], func(r *Record) { r.PrevHash = strings.Repeat("0", 64) })
			return l
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.edit(slices.Clone(lines))
			res, err := VerifyReader(strings.NewReader(strings.Join(in, "\n") + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.badLine == 0 {
				if !res.OK || res.Records != 8 || res.FirstSeq != 1 || res.LastSeq != 8 || res.LastHash != tt.lastHash || res.LastHash != live.LastHash {
					t.Fatalf("VerifyReader = %+v, want OK over 8 records ending in %s", res, tt.lastHash)
				}
				return
			}
			if res.OK {
				t.Fatalf("VerifyReader passed a tampered export: %+v", res)
			}
			if res.BadLine != tt.badLine || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("VerifyReader: line %d, %q; want line %d, a reason with %q", res.BadLine, res.Reason, tt.badLine, tt.reason)
			}
			if res.LastSeq >= uint64(tt.badLine) && tt.reason != "out of order" {
				t.Errorf("last good seq %d is not before the bad line %d", res.LastSeq, tt.badLine)
			}
		})
	}

	// A tamperer who rewrites the chain from the changed record to the end gets an
	// export that verifies, but whose last hash is not the one Verify reported:
	// that is what LastHash is for.
	forged := slices.Clone(lines)
	prev := ""
	for i := range forged {
		forged[i] = rehash(t, forged[i], func(r *Record) {
			if i == 3 {
				r.Outcome = Failed
			}
			if i > 3 {
				r.PrevHash = prev
			}
		})
		var r Record
		_ = json.Unmarshal([]byte(forged[i]), &r)
		prev = r.Hash
	}
	res, err := VerifyReader(strings.NewReader(strings.Join(forged, "\n")))
	if err != nil || !res.OK {
		t.Fatalf("rewritten chain: %+v, %v", res, err)
	}
	if res.LastHash == live.LastHash {
		t.Fatal("a rewritten chain ends in the original last hash")
	}
}

func TestVerifyReaderEdges(t *testing.T) {
	res, err := VerifyReader(strings.NewReader(""))
	if err != nil || !res.OK || res.Records != 0 {
		t.Errorf("empty export: %+v, %v", res, err)
	}
	_, err = VerifyReader(iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("read error: %v", err)
	}
	res, err = VerifyReader(strings.NewReader("[1,2,3]\n"))
	if err != nil || res.OK || res.FirstBad != nil || res.BadLine != 1 {
		t.Errorf("not a record: %+v, %v", res, err)
	}
}

func TestVerifyPartial(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	for i := range 12 {
		r := sample(i)
		if i%3 == 0 {
			r.Outcome = Failed // seqs 1, 4, 7, 10
		}
		if _, err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(lines []string, fn func(r *strings.Reader) (VerifyResult, error)) VerifyResult {
		t.Helper()
		res, err := fn(strings.NewReader(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	failed := exportLines(t, ctx, b.JS, Filter{Outcome: "failed"})
	if len(failed) != 4 {
		t.Fatalf("filtered export has %d lines, want 4", len(failed))
	}
	if res := verify(failed, func(r *strings.Reader) (VerifyResult, error) { return VerifyReader(r) }); res.OK {
		t.Errorf("VerifyReader passed a filtered export (a gap is a dropped record there)")
	}
	partial := func(r *strings.Reader) (VerifyResult, error) { return VerifyPartial(r) }
	res := verify(failed, partial)
	if !res.OK || res.Records != 4 || res.FirstSeq != 1 || res.LastSeq != 10 || res.Missing != 6 {
		t.Errorf("VerifyPartial(filtered) = %+v, want OK, 4 records, seqs 1..10, 6 missing", res)
	}

	// Changing or reordering records still fails.
	changed := slices.Clone(failed)
	changed[2] = strings.Replace(changed[2], `"record 6"`, `"record six"`, 1)
	if res := verify(changed, partial); res.OK || res.BadLine != 3 || !strings.Contains(res.Reason, "hash mismatch") {
		t.Errorf("changed record: %+v", res)
	}
	swapped := slices.Clone(failed)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	if res := verify(swapped, partial); res.OK || res.BadLine != 3 || !strings.Contains(res.Reason, "out of order") {
		t.Errorf("swapped records: %+v", res)
	}

	// An export whose head is gone: VerifyReader refuses it, VerifyPartial checks
	// every link it can, which here is all of them.
	full := exportLines(t, ctx, b.JS, Filter{})
	headless := full[5:]
	if res := verify(headless, func(r *strings.Reader) (VerifyResult, error) { return VerifyReader(r) }); res.OK {
		t.Errorf("VerifyReader passed an export without its head")
	}
	if res := verify(headless, partial); !res.OK || res.FirstSeq != 6 || res.Missing != 0 || res.Records != 7 {
		t.Errorf("VerifyPartial(headless) = %+v", res)
	}
	relinked := slices.Clone(headless)
	relinked[3] = rehash(t, relinked[3], func(r *Record) { r.Detail = "rewritten" })
	if res := verify(relinked, partial); res.OK || res.BadLine != 5 || !strings.Contains(res.Reason, "prev_hash") {
		t.Errorf("VerifyPartial(rewritten record between neighbours) = %+v", res)
	}
}

// Records that did not come from a Writer (published straight to the stream by
// someone with publish rights) are named by Verify.
func TestVerifyNamesForgedRecords(t *testing.T) {
	forge := func(t *testing.T, edit func(r *Record, subject *string)) (VerifyResult, Record) {
		t.Helper()
		ctx := testCtx(t)
		b := openBus(t)
		w := NewWriter(b.JS, WriterOptions{Logger: quiet})
		recs := appendN(t, ctx, w, 3)
		r := sample(7)
		r.ID = "forged"
		r.Time = recs[2].Time
		r.Seq = 4
		r.PrevHash = recs[2].Hash
		subject := bus.AuditSubject(r.TenantID, string(r.Outcome), r.Action)
		edit(&r, &subject)
		r.Hash, _ = r.ComputeHash()
		data, _ := json.Marshal(r)
		if _, err := b.JS.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, jetstream.WithExpectLastSequence(3)); err != nil {
			t.Fatal(err)
		}
		appendN(t, ctx, NewWriter(b.JS, WriterOptions{Logger: quiet}), 1) // a writer chains after it
		res, err := Verify(ctx, b.JS)
		if err != nil {
			t.Fatal(err)
		}
		return res, r
	}
	tests := []struct {
		name   string
		edit   func(r *Record, subject *string)
		reason string
	}{
		{"control: a well-formed record", func(*Record, *string) {}, ""},
		{"wrong link", func(r *Record, _ *string) { r.PrevHash = strings.Repeat("a", 64) }, "prev_hash"},
		{"wrong seq", func(r *Record, _ *string) { r.Seq = 9 }, "stored at stream sequence 4"},
		{"wrong subject", func(r *Record, s *string) { *s = bus.AuditSubject(r.TenantID, "failed", r.Action) }, "subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, forged := forge(t, tt.edit)
			if tt.reason == "" {
				if !res.OK || res.Records != 5 {
					t.Fatalf("Verify = %+v, want OK", res)
				}
				return
			}
			if res.OK || res.BadSeq != 4 || res.FirstBad == nil || res.FirstBad.ID != forged.ID || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("Verify = %+v (%s), want the forged record at seq 4 named for %q", res, res.Reason, tt.reason)
			}
			if res.LastSeq != 3 || res.Records != 4 {
				t.Errorf("Verify read %d records, last good %d; want 4 and 3", res.Records, res.LastSeq)
			}
		})
	}
}
