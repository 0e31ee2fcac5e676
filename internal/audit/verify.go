package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

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
	// Signed counts the records whose signature was checked (strict checks
	// only); Unsigned the records accepted unsigned (VerifyOptions.UnsignedPrefix).
	Signed, Unsigned int
	// Head is the export's signed head line, when it has one.
	Head *Head
	// Anchors counts the expected heads found in the chain; Notes says what could
	// not be checked (an anchor older than the first record read).
	Anchors int
	Notes   []string
}

// VerifyOptions are the strict checks of VerifyStream, VerifyExport and Checker.
type VerifyOptions struct {
	// Trusted are the engine keys: every record must be signed by one of them
	// (required).
	Trusted Trusted
	// Anchors are heads the chain must still contain: the kept head file, the
	// KV head, an operator's --expect-head.
	Anchors []Anchor
	// Now is the clock that judges whether an anchor missing from the stream
	// can have aged out (default time.Now).
	Now func() time.Time
	// UnsignedPrefix accepts records with no signer and no signature until the
	// first signed one (a trail begun before records were signed); after it,
	// every record must be signed. Unsigned counts them.
	UnsignedPrefix bool
}

// Anchor is an expected head: the record at Seq must have Hash. Seq 0 means
// "some record has Hash" (an operator who kept only the hash).
type Anchor struct {
	Seq    uint64
	Hash   string
	Time   time.Time // the record's time, when known (a head's RecordTime)
	Source string    // what said so, for the reason ("the head file")
}

// AnchorFromHead is the anchor a signed head gives.
func AnchorFromHead(h Head, source string) Anchor {
	return Anchor{Seq: h.Seq, Hash: h.Hash, Time: h.RecordTime, Source: source}
}

// ParseAnchor reads an operator's anchor: HASH, or SEQ:HASH.
func ParseAnchor(s, source string) (Anchor, error) {
	a := Anchor{Source: source, Hash: strings.TrimSpace(s)}
	if seq, hash, ok := strings.Cut(a.Hash, ":"); ok {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || n == 0 {
			return Anchor{}, fmt.Errorf("audit: anchor %q: %q is not a seq", s, seq)
		}
		a.Seq, a.Hash = n, hash
	}
	if len(a.Hash) != 64 || strings.Trim(a.Hash, "0123456789abcdef") != "" {
		return Anchor{}, fmt.Errorf("audit: anchor %q: want a record hash (64 lowercase hex digits), optionally after SEQ:", s)
	}
	return a, nil
}

// Stored is one message of the trail as a transport delivers it: Data exactly as
// stored; Seq its stream sequence (0 when the transport does not say: the seq
// the record claims is used); Subject its stream subject ("" when unknown: not
// checked).
type Stored struct {
	Seq     uint64
	Subject string
	Data    []byte
}

// Checker is the strict verify of a live trail, fed message by message in stream
// order from any transport (the stream itself, or the engine's query service).
// Feed it with Add until it returns false or the messages end, then call Result.
type Checker struct{ c chainCheck }

// NewChecker returns a strict checker of a live trail. limits are the stream's
// (LimitsOf its configuration): records missing from its start are believed
// aged out only when the stream drops records by itself, and an anchor missing
// from it only when it is old enough.
func NewChecker(opts VerifyOptions, limits Limits) (*Checker, error) {
	c, err := newStrict(modeStream, opts)
	if err != nil {
		return nil, err
	}
	c.limits = limits
	return &Checker{c: *c}, nil
}

// Add checks the next message; false once the trail is broken.
func (k *Checker) Add(m Stored) bool { return k.c.add(m.Data, m.Seq, m.Subject, 0) }

// Result finishes the check (anchors, head) and returns the outcome.
func (k *Checker) Result() VerifyResult { return k.c.finish() }

func newStrict(mode checkMode, opts VerifyOptions) (*chainCheck, error) {
	if opts.Trusted.Empty() {
		return nil, errors.New("audit: verify needs the trusted engine keys (the data directory's engine key, the analysts file's engines, or --trust)")
	}
	c := &chainCheck{mode: mode, strict: true, trusted: opts.Trusted, now: opts.Now, unsignedOK: opts.UnsignedPrefix}
	if c.now == nil {
		c.now = time.Now
	}
	for _, a := range opts.Anchors {
		c.anchors = append(c.anchors, anchorState{Anchor: a})
	}
	return c, nil
}

// VerifyStream is the strict check of the live AUDIT stream: everything Verify
// checks, and every record signed by a trusted engine key, the first record
// linked to a record before it unless it is seq 1, and every anchor still in
// the chain (a wiped and recreated stream, or records cut off its end, fail).
func VerifyStream(ctx context.Context, js jetstream.JetStream, opts VerifyOptions) (VerifyResult, error) {
	s, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("audit: stream %s: %w", bus.StreamAudit, err)
	}
	k, err := NewChecker(opts, LimitsOf(s.CachedInfo().Config))
	if err != nil {
		return VerifyResult{}, err
	}
	err = scan(ctx, js, bus.StreamAudit, "", func(m storedMsg) error {
		if !k.Add(Stored{Seq: m.seq, Subject: m.subject, Data: m.data}) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return k.c.result(), err
	}
	return k.Result(), nil
}

// VerifyExport is the strict check of an unfiltered JSONL export: everything
// VerifyReader checks, every record signed by a trusted engine key, and the
// export must end with a head signed by a trusted engine that names its last
// record, so records dropped before it (at the tail, or anywhere) and a missing
// head fail. Anchors are checked as VerifyStream does.
func VerifyExport(r io.Reader, opts VerifyOptions) (VerifyResult, error) {
	c, err := newStrict(modeExport, opts)
	if err != nil {
		return VerifyResult{}, err
	}
	return c.lines(r)
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
	return c.lines(r)
}

func (c *chainCheck) lines(r io.Reader) (VerifyResult, error) {
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
	return c.finish(), nil
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

	// Strict checks (VerifyStream, VerifyExport, Checker).
	strict   bool
	trusted  Trusted
	limits   Limits // how the stream drops records by itself (exports: anything may be missing before)
	now      func() time.Time
	signed   int
	unsigned int
	// unsignedOK: unsigned records are still accepted (UnsignedPrefix, no
	// signed record seen yet).
	unsignedOK bool
	anchors    []anchorState
	head       *Head
	headLine   int
	notes      []string
	finished   bool
}

type anchorState struct {
	Anchor
	found bool
}

// add checks one stored record. streamSeq and subject are known for the stream
// only, line for the readers only. It returns false once the chain is broken.
func (c *chainCheck) add(data []byte, streamSeq uint64, subject string, line int) bool {
	if c.broken {
		return false
	}
	if c.mode != modeStream && isHeadLine(data) {
		return c.addHead(data, line)
	}
	c.records++
	if c.head != nil {
		return c.fail(nil, streamSeq, line, fmt.Sprintf("a record follows the export's head (line %d): the head must be the last line", c.headLine))
	}
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

	if c.strict && c.unsignedOK && rec.Signer == "" && rec.Sig == "" {
		c.unsigned++
	} else if c.strict {
		c.unsignedOK = false
		if err := c.trusted.VerifyRecord(rec); err != nil {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("record %s was not appended by a trusted engine (%v)", rec.ID, err))
		}
		c.signed++
	}

	switch {
	case !c.started && rec.Seq == 1:
		if rec.PrevHash != "" {
			return c.fail(&rec, streamSeq, line, fmt.Sprintf("the first record of the chain has prev_hash %s, want none", rec.PrevHash))
		}
	case !c.started && c.strict && rec.PrevHash == "":
		return c.fail(&rec, streamSeq, line, fmt.Sprintf("the first record is seq %d and its link to the record before it is missing (empty prev_hash): the trail was recreated from there, or records 1..%d were removed", rec.Seq, rec.Seq-1))
	case !c.started && c.strict && c.mode == modeStream && !c.limits.retains():
		return c.fail(&rec, streamSeq, line, fmt.Sprintf("the stream starts at seq %d but keeps records forever: records 1..%d were removed", rec.Seq, rec.Seq-1))
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
	if c.strict {
		if reason := c.matchAnchors(rec); reason != "" {
			return c.fail(&rec, streamSeq, line, reason)
		}
	}
	if !c.started {
		c.started, c.first = true, rec.Seq
	}
	c.prev = rec
	return true
}

// matchAnchors checks rec (and, for the first record, its link) against the
// expected heads.
func (c *chainCheck) matchAnchors(rec Record) string {
	for i := range c.anchors {
		a := &c.anchors[i]
		switch {
		case a.Seq == rec.Seq && a.Hash != rec.Hash:
			return fmt.Sprintf("record %d has hash %s but %s says %s: the trail was rewritten, or the stream deleted and recreated", rec.Seq, rec.Hash, a.Source, a.Hash)
		case !c.started && a.Seq != 0 && a.Seq+1 == rec.Seq && rec.PrevHash != a.Hash:
			return fmt.Sprintf("the first record (seq %d) links to %s but %s says record %d is %s: the trail was recreated", rec.Seq, rec.PrevHash, a.Source, a.Seq, a.Hash)
		case !c.started && a.Seq != 0 && a.Seq+1 == rec.Seq && c.mode == modeStream && !c.limits.agedOut(a.Time, c.now()):
			return fmt.Sprintf("the stream starts at seq %d, after record %d which %s names, but that record (%s) is too recent to have aged out: the stream was deleted and recreated", rec.Seq, a.Seq, a.Source, a.Time.Format(time.RFC3339))
		case !c.started && a.Seq != 0 && a.Seq+1 == rec.Seq:
			a.found = true // its successor's link vouches for it
		case a.Hash == rec.Hash && (a.Seq == 0 || a.Seq == rec.Seq):
			a.found = true
		}
	}
	return ""
}

// addHead takes an export's head line.
func (c *chainCheck) addHead(data []byte, line int) bool {
	if c.head != nil {
		return c.fail(nil, 0, line, fmt.Sprintf("a second head line (the first is line %d)", c.headLine))
	}
	h, err := ParseHead(data)
	if err != nil {
		return c.fail(nil, 0, line, err.Error())
	}
	if canon := h.Marshal(); !bytes.Equal(canon, bytes.TrimSpace(data)) {
		return c.fail(nil, h.Seq, line, "the head line is not in its canonical encoding (edited)")
	}
	if c.strict {
		if err := c.trusted.VerifyHead(h); err != nil {
			return c.fail(nil, h.Seq, line, fmt.Sprintf("the export's head was not signed by a trusted engine (%v)", err))
		}
	}
	c.head, c.headLine = &h, line
	return true
}

// finish runs the checks that need the whole input: the export's head, and the
// anchors not met on the way. Idempotent.
func (c *chainCheck) finish() VerifyResult {
	if c.finished || c.broken {
		return c.result()
	}
	c.finished = true
	last := c.prev.Seq
	if c.head != nil {
		h := c.head
		switch {
		case c.mode == modePartial && h.Seq < last:
			c.fail(nil, h.Seq, c.headLine, fmt.Sprintf("the head names seq %d but the export holds seq %d", h.Seq, last))
		case c.mode == modePartial && h.Seq == last && h.Hash != c.prev.Hash:
			c.fail(nil, h.Seq, c.headLine, fmt.Sprintf("the head says record %d is %s, the export's is %s", h.Seq, h.Hash, c.prev.Hash))
		case c.mode == modePartial:
		case last < h.Seq:
			c.fail(nil, h.Seq, c.headLine, fmt.Sprintf("the export's signed head names seq %d but its records end at seq %d: %s dropped", h.Seq, last, span(last+1, h.Seq)))
		case last > h.Seq || h.Hash != c.prev.Hash:
			c.fail(nil, h.Seq, c.headLine, fmt.Sprintf("the export's signed head names record %d (%s), not its last record %d (%s)", h.Seq, h.Hash, last, c.prev.Hash))
		}
		if c.broken {
			return c.result()
		}
	} else if c.strict && c.mode == modeExport {
		c.fail(nil, 0, 0, fmt.Sprintf("the export ends at seq %d without a signed head line: it may have been cut off (records or the head dropped at the end)", last))
		return c.result()
	}
	for _, a := range c.anchors {
		switch {
		case a.found:
		case a.Seq == 0:
			c.fail(nil, 0, 0, fmt.Sprintf("no record has hash %s, which %s names: the trail was rewritten, cut off, or recreated", a.Hash, a.Source))
		case a.Seq > last:
			c.fail(nil, a.Seq, 0, fmt.Sprintf("the trail ends at seq %d but %s names record %d (%s): records were cut off the end, or the stream was deleted and recreated", last, a.Source, a.Seq, a.Hash))
		case c.started && a.Seq < c.first && c.mode == modeStream && !c.limits.agedOut(a.Time, c.now()):
			c.fail(nil, a.Seq, 0, fmt.Sprintf("the stream starts at seq %d but %s names record %d of %s, too recent to have aged out: the stream was deleted and recreated", c.first, a.Source, a.Seq, a.Time.Format(time.RFC3339)))
		case c.started && a.Seq < c.first:
			c.notes = append(c.notes, fmt.Sprintf("%s names record %d, older than the first record read (%d): not checked", a.Source, a.Seq, c.first))
			continue
		default:
			c.fail(nil, a.Seq, 0, fmt.Sprintf("%s names record %d (%s), which is not in the trail", a.Source, a.Seq, a.Hash))
		}
		if c.broken {
			return c.result()
		}
	}
	return c.result()
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
		Signed:   c.signed,
		Unsigned: c.unsigned,
		Head:     c.head,
		Notes:    c.notes,
	}
	for _, a := range c.anchors {
		if a.found {
			res.Anchors++
		}
	}
	return res
}
