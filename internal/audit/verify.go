package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// VerifyResult is the outcome of a chain check. Verification stops at the first
// broken record.
type VerifyResult struct {
	// Records is how many records were read, the broken one included.
	Records int
	// OK: every record read is intact and linked to the one before it.
	OK bool
	// FirstBad is the first broken record as stored (nil when OK, or when the
	// broken message does not even decode as a record).
	FirstBad *Record
	// BadSeq is where the first broken message is: its stream sequence for Verify;
	// for the readers, the seq it claims (0 if it has none).
	BadSeq uint64
	// BadLine is the 1-based line of the first broken record (readers only).
	BadLine int
	// Reason says what is wrong with FirstBad.
	Reason string
	// FirstSeq is the seq of the first record read. Above 1, the records before it
	// were not checked (aged out of the stream, or not in the export).
	FirstSeq uint64
	// LastSeq and LastHash identify the last intact record. Keep them somewhere
	// the trail's writers cannot reach and compare later: a hash chain alone cannot
	// show that records were cut off its end.
	LastSeq  uint64
	LastHash string
	// Missing counts records absent between FirstSeq and LastSeq that VerifyPartial
	// skipped (always 0 for Verify and VerifyReader, which fail on a gap).
	Missing uint64
}

// Verify checks the whole AUDIT stream as it stands when Verify begins: that every
// message is a record in its canonical encoding, that its hash is the hash of its
// content, that its seq is its stream sequence, that it is stored on its subject,
// and that its prev_hash is the hash of the record at the sequence before it. The
// first record must have an empty prev_hash when it is seq 1; when older records
// have aged out of the stream, its link is not checked (see FirstSeq). An error is
// returned only when the stream cannot be read; a broken chain is a result.
func Verify(ctx context.Context, js jetstream.JetStream) (VerifyResult, error) {
	c := chainCheck{mode: modeStream}
	err := scan(ctx, js, bus.StreamAudit, "", func(m storedMsg) error {
		if !c.add(m.data, m.seq, m.subject, 0) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return c.result(), err
	}
	return c.result(), nil
}

// VerifyReader checks an unfiltered JSONL export (see Export) offline, as Verify
// checks the stream: each line must be a record in its canonical encoding with a
// correct hash, the first must be the chain's first record (seq 1, empty
// prev_hash), and each next one must carry the next seq and the previous record's
// hash. So changing any byte of a record, dropping a record, reordering records,
// or dropping the head fails. Blank lines are ignored.
//
// What no offline check can see is records cut off the end, or an export of an
// empty trail: compare Records, LastSeq and LastHash with a value kept elsewhere
// (for instance the result of Verify on the live stream).
//
// An export whose head has aged out of the stream, and a filtered export, fail
// here; check them with VerifyPartial.
func VerifyReader(r io.Reader) (VerifyResult, error) {
	return verifyLines(r, modeExport)
}

// VerifyPartial checks a filtered export, or one that does not start at the
// chain's first record. Each record's own hash and canonical encoding are checked,
// seqs must strictly increase, and a record whose seq follows the previous one's
// must link to it; where seqs jump, the link cannot be checked and the missing
// records are counted in Missing instead of failing. So a changed or reordered
// record still fails, but a dropped record shows only as a gap: VerifyPartial
// cannot tell records a filter left out from records someone removed.
func VerifyPartial(r io.Reader) (VerifyResult, error) {
	return verifyLines(r, modePartial)
}

// maxLine is the longest record line a reader accepts (records are at most the
// bus's 8 MiB message size).
const maxLine = 16 << 20

func verifyLines(r io.Reader, mode checkMode) (VerifyResult, error) {
	c := chainCheck{mode: mode}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if !c.add(b, 0, "", line) {
			return c.result(), nil
		}
	}
	if err := sc.Err(); err != nil {
		return c.result(), fmt.Errorf("audit: verify export, after line %d: %w", line, err)
	}
	return c.result(), nil
}

type checkMode int

const (
	modeStream  checkMode = iota // the live stream: positions are stream sequences
	modeExport                   // a full export: must start at seq 1, no gaps
	modePartial                  // a filtered or head-truncated export: gaps counted
)

// chainCheck is the chain verifier shared by the stream and the readers: feed it
// records in order with add; it stops at the first broken one. No I/O.
type chainCheck struct {
	mode    checkMode
	records int
	prev    Record // the last intact record
	started bool
	first   uint64 // seq of the first record read
	missing uint64
	bad     *Record
	badSeq  uint64
	badLine int
	reason  string
	broken  bool
}

// add checks one stored record. streamSeq and subject are known for the stream
// only, line for the readers only. It returns false once the chain is broken.
func (c *chainCheck) add(data []byte, streamSeq uint64, subject string, line int) bool {
	if c.broken {
		return false
	}
	c.records++
	rec, err := decodeStrict(data)
	if err != nil {
		var loose Record
		if json.Unmarshal(data, &loose) == nil {
			return c.fail(&loose, streamSeq, line, err.Error())
		}
		return c.fail(nil, streamSeq, line, err.Error())
	}
	if streamSeq == 0 {
		streamSeq = rec.Seq // readers: name the record by the seq it claims
	}
	want, err := rec.ComputeHash()
	if err != nil {
		return c.fail(&rec, streamSeq, line, err.Error())
	}
	if rec.Hash != want {
		return c.fail(&rec, streamSeq, line, fmt.Sprintf("hash mismatch: the record says %s, its content hashes to %s (the record was changed)", rec.Hash, want))
	}
	if canon, err := json.Marshal(rec); err != nil || !bytes.Equal(canon, data) {
		return c.fail(&rec, streamSeq, line, "the stored bytes are not the canonical encoding of the record (edited outside the writer)")
	}
	if rec.Seq == 0 {
		return c.fail(&rec, streamSeq, line, "the record has no seq")
	}
	if c.mode == modeStream {
		if rec.Seq != streamSeq {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("the record says seq %d but is stored at stream sequence %d", rec.Seq, streamSeq))
		}
		if want := bus.AuditSubject(rec.TenantID, string(rec.Outcome), rec.Action); subject != want {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("stored on subject %s, its content belongs on %s", subject, want))
		}
	}

	switch {
	case !c.started && rec.Seq == 1:
		if rec.PrevHash != "" {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("the first record of the chain has prev_hash %s, want none", rec.PrevHash))
		}
	case !c.started:
		if c.mode == modeExport {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("the export starts at seq %d: records 1..%d are missing (dropped, or aged out of the stream: check such an export with VerifyPartial)", rec.Seq, rec.Seq-1))
		}
		// The stream's or the export's head is gone: this record's link cannot be
		// checked. FirstSeq says so.
	case rec.Seq <= c.prev.Seq:
		return c.fail(&rec, streamSeq, line, fmt.Sprintf("out of order: seq %d comes after seq %d", rec.Seq, c.prev.Seq))
	case rec.Seq == c.prev.Seq+1:
		if rec.PrevHash != c.prev.Hash {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("prev_hash %s is not the hash of seq %d (%s)", rec.PrevHash, c.prev.Seq, c.prev.Hash))
		}
	default: // a gap
		if c.mode != modePartial {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("seq %d follows seq %d: %s missing or out of place", rec.Seq, c.prev.Seq, span(c.prev.Seq+1, rec.Seq-1)))
		}
		c.missing += rec.Seq - c.prev.Seq - 1
	}
	if !c.started {
		c.started, c.first = true, rec.Seq
	}
	c.prev = rec
	return true
}

func span(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("record %d is", from)
	}
	return fmt.Sprintf("records %d..%d are", from, to)
}

func (c *chainCheck) fail(rec *Record, seq uint64, line int, reason string) bool {
	c.broken, c.bad, c.badSeq, c.badLine, c.reason = true, rec, seq, line, reason
	return false
}

func (c *chainCheck) result() VerifyResult {
	res := VerifyResult{
		Records:  c.records,
		OK:       !c.broken,
		FirstBad: c.bad,
		BadSeq:   c.badSeq,
		BadLine:  c.badLine,
		Reason:   c.reason,
		LastSeq:  c.prev.Seq,
		LastHash: c.prev.Hash,
		FirstSeq: c.first,
		Missing:  c.missing,
	}
	return res
}
