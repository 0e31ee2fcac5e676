package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// Errors a caller may want to tell apart with errors.Is.
var (
	// ErrInvalidRecord: the record cannot be appended as given (no tenant, no outcome).
	ErrInvalidRecord = errors.New("audit: invalid record")
	// ErrBrokenTail: the last message of the stream is not an audit record, so a new
	// record cannot be chained to it. Verify names the message; appending stays
	// refused (fail closed) until an operator has dealt with it.
	ErrBrokenTail = errors.New("audit: the last message of the audit stream is not a record")
	// ErrSequence: the server stored a record at a sequence other than the one the
	// record names. It cannot happen while the server honours the expected-last-
	// sequence header; if it does, the chain is broken at that record.
	ErrSequence = errors.New("audit: record stored at an unexpected stream sequence")
	// ErrContention: every attempt lost the race to another writer or timed out.
	ErrContention = errors.New("audit: append gave up after repeated conflicts or timeouts")
)

// DefaultMaxAttempts bounds the publishes one Append makes.
const DefaultMaxAttempts = 32

// maxUnanswered bounds the attempts in a row that got no answer (timeouts, no
// stream leader). A conflict means another writer made progress and is worth
// many retries; silence means trouble, and each silent attempt costs a whole
// publish timeout.
const maxUnanswered = 3

// Backoff between attempts: equal jitter over an exponentially growing ceiling.
const (
	backoffBase = 1 * time.Millisecond
	backoffMax  = 100 * time.Millisecond
)

// WriterOptions configures a Writer. The zero value is usable.
type WriterOptions struct {
	// Stream is the JetStream stream holding the chain (default bus.StreamAudit).
	// The readers of this package always read bus.StreamAudit.
	Stream string
	// Now is the clock for records appended without a time (default time.Now).
	Now func() time.Time
	// Logger receives conflicts (debug) and ambiguous publishes (warn).
	Logger *slog.Logger
	// MaxAttempts bounds the publishes of one Append (default DefaultMaxAttempts).
	MaxAttempts int
	// Signer signs every record (the engine key; see sign.go). nil: records are
	// appended unsigned, which a verify that trusts engine keys fails.
	Signer Signer
	// AckWait bounds the wait for a publish's acknowledgement (default
	// bus.DefaultCallTimeout); a publish unanswered in time is retried.
	AckWait time.Duration
	// Head, if set, keeps the chain's head outside the stream: the writer tells it
	// each record it stores, and before appending after reading the stream's tail
	// checks that the stream still contains the kept head (ErrHeadMismatch if not).
	Head *HeadKeeper
}

// Writer appends records to the AUDIT stream as one hash chain.
//
// A Writer is safe for concurrent use: its appends are serialised, since each
// record commits to the one before it. Several Writers, in one process or in many,
// may share the chain: each publish carries the sequence the writer believes is the
// last one (Nats-Expected-Last-Sequence), the server refuses it when another writer
// got there first, and the loser reloads the tail and retries (bounded, jittered).
// Between appends a Writer caches the tail it last saw or wrote, so a lone writer
// reads the stream only once.
type Writer struct {
	js          jetstream.JetStream
	stream      string
	now         func() time.Time
	log         *slog.Logger
	maxAttempts int
	signer      Signer
	signerKey   string
	signerErr   error
	head        *HeadKeeper

	// sem is a one-slot semaphore: holding it is the right to append and to use
	// the fields below. A channel rather than a mutex so a waiting Append honours
	// its context.
	sem chan struct{}
	// qmu guards queue, the appends waiting for a holder of sem to store them.
	qmu   sync.Mutex
	queue []*pendingAppend

	ackWait time.Duration
	tail    Record // the last record of the stream as this writer knows it
	tailOK  bool   // tail is believed current; false forces a reload
	tailAt  uint64 // stream sequence of tail (its Seq, or the last sequence of an emptied stream)
	// serial: the stream is replicated (a cluster), so a holder publishes
	// one record at a time (publishChained says why); read with the tail.
	serial bool
}

// NewWriter returns a Writer on js. It does no I/O: the first Append reads the tail.
func NewWriter(js jetstream.JetStream, opts WriterOptions) *Writer {
	w := &Writer{
		js:          js,
		stream:      opts.Stream,
		now:         opts.Now,
		log:         opts.Logger,
		maxAttempts: opts.MaxAttempts,
		signer:      opts.Signer,
		head:        opts.Head,
		sem:         make(chan struct{}, 1),
	}
	if w.signer != nil {
		w.signer = fastSigner(w.signer)
		if w.signerKey, w.signerErr = w.signer.PublicKey(); w.signerErr == nil && w.signerKey == "" {
			w.signerErr = errors.New("empty public key")
		}
	}
	if w.stream == "" {
		w.stream = bus.StreamAudit
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.maxAttempts <= 0 {
		w.maxAttempts = DefaultMaxAttempts
	}
	w.ackWait = opts.AckWait
	if w.ackWait <= 0 {
		w.ackWait = bus.DefaultCallTimeout
	}
	return w
}

// Append stores r as the next record of the chain and returns it as stored.
//
// Append fills ID (a random UUID unless set), Time (now, if zero; always turned to
// UTC), Seq (the stream sequence the record gets), PrevHash and Hash; values the
// caller put in Seq, PrevHash or Hash are overwritten. TenantID and Outcome are
// required. The record is published to bus.AuditSubject(tenant, outcome, action)
// with the record id as Nats-Msg-Id.
//
// Append is idempotent on the record id within the stream's duplicate window (two
// minutes by default): if the record was already stored, by this call (an ack lost
// to a timeout) or by an earlier one, Append returns the stored record and stores
// nothing new. If Append returns an error the record may still have been stored;
// a caller that retries should therefore set ID itself and retry with the same ID.
func (w *Writer) Append(ctx context.Context, r Record) (Record, error) {
	r, err := w.prepare(r)
	if err != nil {
		return Record{}, err
	}
	p := &pendingAppend{rec: r, done: make(chan struct{})}
	w.qmu.Lock()
	w.queue = append(w.queue, p)
	w.qmu.Unlock()
	return w.await(ctx, p)
}

// prepare validates r and fills what Append fills before chaining it.
func (w *Writer) prepare(r Record) (Record, error) {
	if r.TenantID == "" {
		return Record{}, fmt.Errorf("%w: tenant_id is empty", ErrInvalidRecord)
	}
	if r.Outcome == "" {
		return Record{}, fmt.Errorf("%w: outcome is empty", ErrInvalidRecord)
	}
	if r.ID == "" {
		id, err := uuid.NewRandom()
		if err != nil {
			return Record{}, fmt.Errorf("audit: record id: %w", err)
		}
		r.ID = id.String()
	}
	if r.Time.IsZero() {
		r.Time = w.now()
	}
	r.Time = r.Time.UTC()
	if w.signerErr != nil {
		return Record{}, fmt.Errorf("audit: append %s: signing key: %w", r.ID, w.signerErr)
	}
	r.Seq, r.PrevHash, r.Hash, r.Signer, r.Sig = 0, "", "", w.signerKey, ""
	return normalize(r)
}

// await waits until p's record is stored or refused: by this call, once it
// holds the right to append, or by the holder before it.
func (w *Writer) await(ctx context.Context, p *pendingAppend) (Record, error) {
	r := p.rec
	for {
		select {
		case <-p.done:
			return p.res, p.err
		case <-ctx.Done():
			if w.dequeue(p) {
				return Record{}, fmt.Errorf("audit: append %s: %w", r.ID, ctx.Err())
			}
			// Another append is storing it: its outcome is this call's.
			<-p.done
			return p.res, p.err
		case w.sem <- struct{}{}:
		}
		// This call holds the right to append: it stores what is queued (its
		// own record among them, or already stored by the holder before it).
		select {
		case <-p.done:
			<-w.sem
			return p.res, p.err
		default:
		}
		batch := w.takeQueue()
		rest := w.appendBatch(ctx, batch)
		w.requeue(rest)
		<-w.sem
	}
}

// maxBatch bounds the records one holder of the append right publishes in one
// go. The records of a batch are chained to each other and published without
// waiting for each acknowledgement; each carries the expected last sequence and
// the expected last message id, so the server stores one only directly after
// the record it was chained to.
const maxBatch = 128

// pendingAppend is one Append waiting for its record to be stored.
type pendingAppend struct {
	rec  Record
	res  Record
	err  error
	done chan struct{}
}

func (p *pendingAppend) finish(res Record, err error) {
	p.res, p.err = res, err
	close(p.done)
}

// dequeue removes p from the queue; false when a holder has taken it already.
func (w *Writer) dequeue(p *pendingAppend) bool {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	for i, q := range w.queue {
		if q == p {
			w.queue = append(w.queue[:i], w.queue[i+1:]...)
			return true
		}
	}
	return false
}

// takeQueue takes up to maxBatch queued appends, oldest first.
func (w *Writer) takeQueue() []*pendingAppend {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	n := min(len(w.queue), maxBatch)
	batch := append([]*pendingAppend(nil), w.queue[:n]...)
	w.queue = append(w.queue[:0], w.queue[n:]...)
	return batch
}

// requeue puts appends a holder could not finish (its context ended) back at
// the front of the queue, in order, for the next holder.
func (w *Writer) requeue(rest []*pendingAppend) {
	if len(rest) == 0 {
		return
	}
	w.qmu.Lock()
	defer w.qmu.Unlock()
	w.queue = append(append([]*pendingAppend(nil), rest...), w.queue...)
}

// appendBatch stores the records of items as the next records of the chain, in
// order, with the publish-and-retry loop: a refused publish (another writer got
// there first) reloads the tail and chains the rest again; an unanswered one is
// retried and, being idempotent on its record id, stored once. It finishes every
// item it can and returns those left when ctx ended. The caller holds w.sem.
func (w *Writer) appendBatch(ctx context.Context, items []*pendingAppend) []*pendingAppend {
	var (
		lastErr    error
		unanswered int
		attempt    int
	)
	failAll := func(err error) {
		for _, p := range items {
			p.finish(Record{}, fmt.Errorf("audit: append %s: %w", p.rec.ID, err))
		}
		items = nil
	}
	for len(items) > 0 {
		if ctx.Err() != nil {
			return items
		}
		attempt++
		if attempt > w.maxAttempts {
			for _, p := range items {
				p.finish(Record{}, fmt.Errorf("%w: record %s, %d attempts, last error: %w", ErrContention, p.rec.ID, w.maxAttempts, lastErr))
			}
			return nil
		}
		if unanswered >= maxUnanswered {
			failAll(fmt.Errorf("no answer from the stream %d times in a row: %w", unanswered, lastErr))
			return nil
		}
		if attempt > 1 && lastErr != nil {
			if sleep(ctx, backoff(attempt)) != nil {
				return items
			}
		}
		if !w.tailOK {
			if err := w.loadTail(ctx); err != nil {
				if ctx.Err() != nil {
					return items
				}
				if ambiguous(err) {
					lastErr = err
					unanswered++
					continue
				}
				failAll(err)
				return nil
			}
		}
		if w.tail.ID == items[0].rec.ID && w.tail.Hash != "" {
			// Already stored: an earlier attempt whose ack was lost, or a repeated call.
			items[0].finish(w.tail, nil)
			items = items[1:]
			attempt--
			continue
		}
		n, err := w.publishChained(ctx, items)
		items = items[n:]
		switch {
		case err == nil:
			attempt, unanswered, lastErr = 0, 0, nil // the budget of attempts is per record
		case conflict(err):
			if n > 0 {
				attempt = 0 // progress: the budget of attempts is per record
			}
			unanswered, lastErr = 0, err
			w.log.Debug("audit append lost the race; reloading the tail", "expected_last_seq", w.tailAt, "attempt", attempt)
		case ambiguous(err):
			unanswered++
			lastErr = err
			w.log.Warn("audit append got no answer; checking whether it was stored", "attempt", attempt, "err", err)
		default:
			// An error that names one record (it was finished with it by
			// publishChained): go on with the rest.
			lastErr = nil
		}
	}
	return nil
}

// publishChained chains items to the tail, publishes them without waiting in
// between, and reads the acknowledgements in order (up to the writer's AckWait,
// whatever ctx says: the publishes are out, and their callers are owed the
// outcome). It finishes the items that
// were stored (advancing the tail) and returns how many it finished, with the
// error that stopped it before the end: a conflict or an unanswered publish
// (the tail is then reloaded by the next attempt), or nil. Any
// later publishes of the batch cannot be stored out of place: each expects the
// record before it as the stream's last message.
func (w *Writer) publishChained(ctx context.Context, items []*pendingAppend) (int, error) {
	type sent struct {
		rec  Record
		data []byte
		fut  jetstream.PubAckFuture
	}
	if w.serial && len(items) > 1 {
		// On a replicated stream the leader checks Nats-Expected-Last-Msg-Id
		// only when the entry is applied, after Raft has committed it
		// (nats-server 2.15 stream.go processJetStreamMsg; the clustered
		// proposal path checks the expected last sequence, not the message
		// id), and a mismatch there is a "critical write error" that stops
		// the stream on every replica. A pipeline can reach it: another
		// writer takes the slot of this batch's first record (refused), and
		// the second record's expected last sequence then matches the other
		// writer's record. TestCluster saw AUDIT stop acknowledging for
		// minutes that way. So on a replicated stream each record waits for
		// the one before it, and carries only the expected last sequence.
		items = items[:1]
	}
	out := make([]sent, 0, len(items))
	prev, prevSeq := w.tail, w.tailAt
	var sendErr error
	for i, p := range items {
		rec := p.rec
		rec.Seq = prevSeq + 1
		rec.PrevHash = prev.Hash
		h, err := rec.ComputeHash()
		if err == nil {
			rec.Hash = h
			if w.signer != nil {
				err = signRecord(w.signer, &rec)
			}
		}
		var data []byte
		if err == nil {
			data, err = json.Marshal(rec)
		}
		if err != nil {
			if i == 0 {
				p.finish(Record{}, fmt.Errorf("audit: append %s: %w", p.rec.ID, err))
				return 1, err
			}
			break // the records before it go now; it fails on its own next time
		}
		opts := []jetstream.PublishOpt{
			jetstream.WithExpectStream(w.stream),
			jetstream.WithExpectLastSequence(prevSeq),
			jetstream.WithMsgID(rec.ID),
		}
		if i > 0 {
			opts = append(opts, jetstream.WithExpectLastMsgID(prev.ID))
		}
		subject := bus.AuditSubject(rec.TenantID, string(rec.Outcome), rec.Action)
		fut, err := w.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, opts...)
		if err != nil {
			sendErr = err
			break
		}
		out = append(out, sent{rec: rec, data: data, fut: fut})
		prev, prevSeq = rec, rec.Seq
	}
	if len(out) == 0 {
		w.tailOK = false
		if sendErr == nil {
			sendErr = errors.New("nothing published")
		}
		if ambiguous(sendErr) || errors.Is(sendErr, jetstream.ErrTooManyStalledMsgs) {
			return 0, fmt.Errorf("%w: %w", context.DeadlineExceeded, sendErr)
		}
		items[0].finish(Record{}, fmt.Errorf("audit: append %s: publish: %w", items[0].rec.ID, sendErr))
		return 1, sendErr
	}
	wait := time.NewTimer(w.ackWait)
	defer wait.Stop()
	for i, s := range out {
		var (
			ack *jetstream.PubAck
			err error
		)
		select {
		case ack = <-s.fut.Ok():
		case err = <-s.fut.Err():
		case <-wait.C:
			err = fmt.Errorf("%w: no acknowledgement in %s", nats.ErrTimeout, w.ackWait)
		}
		p := items[i]
		if err != nil {
			w.tailOK = false
			if conflict(err) || ambiguous(err) {
				return i, err
			}
			p.finish(Record{}, fmt.Errorf("audit: append %s: publish: %w", p.rec.ID, err))
			return i + 1, err
		}
		if ack.Duplicate {
			// The server already holds a message with this id (an earlier attempt
			// whose ack was lost, followed by other writers' records): that is the
			// stored record. The records after it were chained to this attempt's
			// copy and are refused; the next attempt chains them again.
			w.tailOK = false
			stored, ferr := w.fetch(ctx, ack.Sequence)
			if ferr != nil {
				p.finish(Record{}, fmt.Errorf("audit: append %s: already stored at seq %d: %w", p.rec.ID, ack.Sequence, ferr))
			} else {
				p.finish(stored, nil)
			}
			return i + 1, errDuplicate
		}
		if ack.Sequence != s.rec.Seq {
			w.tailOK = false
			w.log.Error("audit record stored at an unexpected sequence; the chain is broken there",
				"id", s.rec.ID, "seq", s.rec.Seq, "stored_at", ack.Sequence)
			p.finish(Record{}, fmt.Errorf("%w: record %s names seq %d, stored at %d", ErrSequence, s.rec.ID, s.rec.Seq, ack.Sequence))
			return i + 1, ErrSequence
		}
		stored, derr := decodeStrict(s.data)
		if derr != nil { // cannot happen: data is our own encoding
			w.tailOK = false
			p.finish(Record{}, fmt.Errorf("audit: append %s: decode own record: %w", p.rec.ID, derr))
			return i + 1, derr
		}
		w.tail, w.tailAt, w.tailOK = stored, ack.Sequence, true
		if w.head != nil {
			w.head.observe(stored)
		}
		p.finish(stored, nil)
	}
	if len(out) < len(items) {
		// A record could not be encoded or sent: the next attempt goes on from
		// the tail just stored.
		if sendErr != nil && !ambiguous(sendErr) {
			return len(out), fmt.Errorf("%w: %w", context.DeadlineExceeded, sendErr)
		}
		return len(out), sendErr
	}
	return len(out), nil
}

// errDuplicate: a record of the batch was already stored; the rest are chained
// again from the reloaded tail.
var errDuplicate = errors.New("audit: record already stored")

// normalize returns r as it will read back from the stream. encoding/json is not
// a fixed point on its first pass: it writes invalid UTF-8 as the escape \ufffd,
// which reads back as U+FFFD and is then written as that character's bytes, so a
// hash taken over the caller's record would not match the record read back.
// After one round trip the encoding is stable.
func normalize(r Record) (Record, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s: %w", ErrInvalidRecord, r.ID, err)
	}
	var out Record
	if err := json.Unmarshal(data, &out); err != nil {
		return Record{}, fmt.Errorf("audit: record %s does not read back: %w", r.ID, err)
	}
	return out, nil
}

// loadTail reads the last message of the stream into the tail cache.
func (w *Writer) loadTail(ctx context.Context) error {
	// The kept head's record exists: a state that ends before it is a
	// server's stale view (StreamAtLeast) until it has had time to catch up,
	// not yet a cut trail.
	s, err := StreamAtLeast(ctx, w.js, w.stream, w.floor().Seq, DefaultStaleWait, w.log)
	if err != nil {
		return err
	}
	st := s.CachedInfo().State
	w.serial = s.CachedInfo().Config.Replicas > 1
	if st.LastSeq == 0 {
		if err := w.checkHead(ctx, s, st, Record{}); err != nil {
			return err
		}
		w.tail, w.tailAt, w.tailOK = Record{}, 0, true
		return nil
	}
	m, err := s.GetMsg(ctx, st.LastSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) && st.Msgs == 0 {
		// Every record has aged out (MaxAge). The chain goes on from the kept
		// head when it is the record aged out last; with no such head there is
		// nothing to link to, and the chain restarts with an empty prev_hash
		// (which a strict verify reports as a first record whose link is missing).
		if err := w.checkHead(ctx, s, st, Record{}); err != nil {
			return err
		}
		tail := Record{}
		if f := w.floor(); f.Seq == st.LastSeq {
			tail = Record{Seq: f.Seq, Hash: f.Hash}
		} else {
			w.log.Warn("audit stream is empty after retention and no kept head names its last record; starting a new chain", "last_seq", st.LastSeq)
		}
		w.tail, w.tailAt, w.tailOK = tail, st.LastSeq, true
		return nil
	}
	if err != nil {
		return fmt.Errorf("read tail at seq %d: %w", st.LastSeq, err)
	}
	rec, err := decodeStrict(m.Data)
	if err != nil || rec.Hash == "" {
		return fmt.Errorf("%w: seq %d on %s: %v", ErrBrokenTail, m.Sequence, m.Subject, err)
	}
	if err := w.checkHead(ctx, s, st, rec); err != nil {
		return err
	}
	w.tail, w.tailAt, w.tailOK = rec, m.Sequence, true
	return nil
}

// floor is the kept head the stream must contain (zero without a keeper).
func (w *Writer) floor() Head {
	if w.head == nil {
		return Head{}
	}
	return w.head.floor()
}

// checkHead checks that the stream, whose state is st and last record tail (zero
// when it has none), still contains the kept head: not cut off before it, not
// rewritten at it. A head that has aged out of the stream cannot be checked.
func (w *Writer) checkHead(ctx context.Context, s jetstream.Stream, st jetstream.StreamState, tail Record) error {
	f := w.floor()
	if f.Seq == 0 {
		return nil
	}
	mismatch := func(format string, a ...any) error {
		err := fmt.Errorf("%w (kept head: seq %d, hash %s): %s", ErrHeadMismatch, f.Seq, f.Hash, fmt.Sprintf(format, a...))
		w.log.Error("audit stream does not contain the kept head: refusing to append", "err", err)
		return err
	}
	switch {
	case st.LastSeq < f.Seq:
		return mismatch("the stream ends at seq %d: records were cut off or the stream was deleted and recreated", st.LastSeq)
	case tail.Seq == f.Seq:
		if tail.Hash != f.Hash {
			return mismatch("the record at seq %d has hash %s: the stream was rewritten or recreated", tail.Seq, tail.Hash)
		}
		return nil
	case f.Seq < st.FirstSeq || st.Msgs == 0:
		// Gone from the stream: believable only if old enough to have aged out.
		if !LimitsOf(s.CachedInfo().Config).agedOut(f.RecordTime, w.now()) {
			return mismatch("the stream starts after seq %d, but that record (%s) is too recent to have aged out: the stream was deleted and recreated", f.Seq, f.RecordTime.Format(time.RFC3339))
		}
		return nil
	}
	m, err := s.GetMsg(ctx, f.Seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return mismatch("the record at seq %d is gone from the middle of the stream", f.Seq)
		}
		return fmt.Errorf("read the kept head's record at seq %d: %w", f.Seq, err)
	}
	rec, err := decodeStrict(m.Data)
	if err != nil {
		return mismatch("the message at seq %d is not a record: %v", f.Seq, err)
	}
	if rec.Hash != f.Hash {
		return mismatch("the record at seq %d has hash %s: the stream was rewritten or recreated", f.Seq, rec.Hash)
	}
	return nil
}

// fetch reads the record stored at seq.
func (w *Writer) fetch(ctx context.Context, seq uint64) (Record, error) {
	s, err := w.js.Stream(ctx, w.stream)
	if err != nil {
		return Record{}, fmt.Errorf("stream %s: %w", w.stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return Record{}, fmt.Errorf("read seq %d: %w", seq, err)
	}
	rec, err := decodeStrict(m.Data)
	if err != nil {
		return Record{}, fmt.Errorf("seq %d: %w", seq, err)
	}
	return rec, nil
}

// errCodeWrongLastMsgID is the server's refusal of a publish whose
// Nats-Expected-Last-Msg-Id is not the stream's last message id
// (JSStreamWrongLastMsgIDErrF in nats-server's jetstream_errors_generated.go;
// nats.go names no constant for it).
const errCodeWrongLastMsgID jetstream.ErrorCode = 10070

// conflict reports a refused expected-last-sequence publish: another writer
// appended first.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant ||
		apiErr.ErrorCode == errCodeWrongLastMsgID
}

// ambiguous reports an error after which the publish may or may not have been
// stored (no answer in time), or a transient absence of the stream's leader.
func ambiguous(err error) bool { return bus.Transient(err) }

// backoff is the pause before attempt n (n >= 2): equal jitter under a ceiling that
// doubles from backoffBase up to backoffMax.
func backoff(n int) time.Duration {
	ceil := backoffMax
	if shift := n - 2; shift < 16 {
		ceil = min(backoffBase<<shift, backoffMax)
	}
	half := ceil / 2
	return half + rand.N(half+1)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
