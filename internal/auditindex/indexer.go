package auditindex

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// Defaults of IndexerConfig.
const (
	DefaultFlushEvery = 4096
	DefaultMaxWait    = time.Second
	fetchBatch        = 1024
	// asyncWindow bounds the chunk publishes in flight (under nats.go's
	// default of 4,000 unacknowledged async publishes).
	asyncWindow = 1024
)

// IndexerConfig wires an Indexer.
type IndexerConfig struct {
	Tenant string
	JS     jetstream.JetStream
	// FlushEvery: records indexed in memory before a flush (default 4096).
	FlushEvery int
	// MaxWait bounds how long a record waits to be indexed while the trail is
	// quiet (default 1s): the Indexer flushes whenever a fetch comes back
	// short.
	MaxWait time.Duration
	Logger  *slog.Logger
	// Flushed, if set, is told the sequence the index is complete up to after
	// each flush (tests and the benchmark wait on it).
	Flushed func(mark uint64)
}

// Indexer follows the AUDIT stream and writes the index.
type Indexer struct {
	cfg IndexerConfig
	log *slog.Logger
}

// NewIndexer checks cfg.
func NewIndexer(cfg IndexerConfig) (*Indexer, error) {
	if cfg.Tenant == "" || cfg.JS == nil {
		return nil, errors.New("auditindex: indexer needs Tenant and JS")
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Indexer{cfg: cfg, log: cfg.Logger}, nil
}

// Mark returns the AUDIT sequence the tenant's index is complete up to (0:
// nothing indexed).
func Mark(ctx context.Context, js jetstream.JetStream, tenant string) (uint64, error) {
	s, err := js.Stream(ctx, bus.StreamAuditIndex)
	if err != nil {
		return 0, fmt.Errorf("auditindex: stream %s: %w", bus.StreamAuditIndex, err)
	}
	return markOf(ctx, s, tenant)
}

type chunkKey struct {
	dim, value string
	bucket     uint64
}

// Run indexes the trail from the mark on, until ctx ends. A failure (the
// stream deleted, the server away) is logged and the indexer starts again
// from the mark after a pause (1 s doubling to 30 s): the index is derived
// data, and pages read what it has not covered from the stream itself, so
// it never stops the engine.
func (ix *Indexer) Run(ctx context.Context) error {
	pause := time.Second
	for {
		started := time.Now()
		err := ix.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			pause = time.Second
		}
		ix.log.Error("audit index stopped; starting again from its mark", "in", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		pause = min(2*pause, 30*time.Second)
	}
}

func (ix *Indexer) run(ctx context.Context) error {
	mark, err := Mark(ctx, ix.cfg.JS, ix.cfg.Tenant)
	if err != nil {
		return err
	}
	s, err := ix.cfg.JS.Stream(ctx, bus.StreamAudit)
	if err != nil {
		return fmt.Errorf("auditindex: stream %s: %w", bus.StreamAudit, err)
	}
	if last := s.CachedInfo().State.LastSeq; mark > last {
		// The stream was deleted and recreated: its sequences start again.
		// Chunks naming the old records stay until they age out; pages check
		// every record they read, so they only cost reads.
		ix.log.Warn("audit stream ends before the index's mark: indexing it from its start", "mark", mark, "last_seq", last)
		mark = 0
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{bus.AuditFilter(ix.cfg.Tenant)},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       mark + 1,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("auditindex: follow %s: %w", bus.StreamAudit, err)
	}
	// One ordered consumer followed for as long as this run lasts: it
	// recovers from a lost delivery or a moved leader by itself. (A Fetch on
	// an ordered consumer deletes and creates the consumer every time, a Raft
	// proposal in a cluster each, and the pull that follows can reach a
	// server that has not yet heard of the new consumer: "no responders".)
	it, err := cons.Messages(jetstream.PullMaxMessages(fetchBatch))
	if err != nil {
		return fmt.Errorf("auditindex: follow %s: %w", bus.StreamAudit, err)
	}
	defer it.Stop()
	ix.log.Debug("audit index following the trail", "from_seq", mark+1)
	pending := map[chunkKey][]entry{}
	spans := map[uint64]span{} // buckets' record times, as written
	touched := map[uint64]span{}
	var last uint64 // last sequence consumed
	count := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		got, err := ix.fetch(ctx, it, func(seq uint64, data []byte) {
			last = max(last, seq)
			at, terms, ok := recordTerms(data)
			if !ok {
				return // not a record: verify names it; nothing to index
			}
			e := entry{seq: seq, sec: at.Unix()}
			b := seq / BucketSize
			touched[b] = touched[b].with(e.sec)
			for _, t := range terms {
				k := chunkKey{t.dim, t.value, b}
				pending[k] = append(pending[k], e)
			}
			count++
		})
		if err != nil {
			return err
		}
		if last > mark && (count >= ix.cfg.FlushEvery || got < fetchBatch) {
			if err := ix.flush(ctx, pending, ix.merge(ctx, spans, touched), last); err != nil {
				return err
			}
			clear(pending)
			clear(touched)
			mark, count = last, 0
			if ix.cfg.Flushed != nil {
				ix.cfg.Flushed(mark)
			}
		}
	}
}

// fetch reads up to fetchBatch messages from it, waiting at most MaxWait in
// all, and returns how many it read (fewer than fetchBatch: the trail's end
// was reached for now).
func (ix *Indexer) fetch(ctx context.Context, it jetstream.MessagesContext, fn func(seq uint64, data []byte)) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, ix.cfg.MaxWait)
	defer cancel()
	got := 0
	for got < fetchBatch {
		m, err := it.Next(jetstream.NextContext(fctx))
		if err != nil {
			if ctx.Err() != nil {
				return got, ctx.Err()
			}
			if fctx.Err() != nil || errors.Is(err, nats.ErrTimeout) {
				return got, nil // nothing more within the wait
			}
			return got, fmt.Errorf("auditindex: read %s: %w", bus.StreamAudit, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return got, fmt.Errorf("auditindex: read %s: %w", bus.StreamAudit, err)
		}
		got++
		fn(md.Sequence.Stream, m.Data())
	}
	return got, nil
}

// flush writes the pending chunks, waits until the stream holds them all, and
// then moves the mark to last.
func (ix *Indexer) flush(ctx context.Context, pending map[chunkKey][]entry, spans map[uint64]span, last uint64) error {
	futures := make([]jetstream.PubAckFuture, 0, asyncWindow)
	wait := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("auditindex: write chunk: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for k, es := range pending {
		subject := bus.AuditIndexChunkSubject(ix.cfg.Tenant, k.dim, Key(k.dim, k.value), k.bucket)
		f, err := ix.cfg.JS.PublishAsync(subject, encodeChunk(es), jetstream.WithExpectStream(bus.StreamAuditIndex))
		if err != nil {
			return fmt.Errorf("auditindex: write chunk: %w", err)
		}
		if futures = append(futures, f); len(futures) == asyncWindow {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	for b, sp := range spans {
		f, err := ix.cfg.JS.PublishAsync(bus.AuditIndexSpanSubject(ix.cfg.Tenant, b), sp.encode(), jetstream.WithExpectStream(bus.StreamAuditIndex))
		if err != nil {
			return fmt.Errorf("auditindex: write span: %w", err)
		}
		if futures = append(futures, f); len(futures) == asyncWindow {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	if err := wait(); err != nil {
		return err
	}
	if _, err := ix.cfg.JS.Publish(ctx, bus.AuditIndexMarkSubject(ix.cfg.Tenant), binary.AppendUvarint(nil, last),
		jetstream.WithExpectStream(bus.StreamAuditIndex)); err != nil {
		return fmt.Errorf("auditindex: write mark: %w", err)
	}
	return nil
}

// markOf reads the mark from the index stream's handle.
func markOf(ctx context.Context, idx jetstream.Stream, tenant string) (uint64, error) {
	m, err := idx.GetLastMsgForSubject(ctx, bus.AuditIndexMarkSubject(tenant))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("auditindex: read mark: %w", err)
	}
	v, n := binary.Uvarint(m.Data)
	if n <= 0 {
		return 0, fmt.Errorf("auditindex: malformed mark at seq %d", m.Sequence)
	}
	return v, nil
}

// span is the earliest and latest record time (Unix seconds) of a bucket.
type span struct {
	min, max int64
	set      bool
}

func (s span) with(sec int64) span {
	if !s.set {
		return span{sec, sec, true}
	}
	return span{min(s.min, sec), max(s.max, sec), true}
}

func (s span) union(o span) span {
	if !o.set {
		return s
	}
	return s.with(o.min).with(o.max)
}

func (s span) encode() []byte {
	return binary.AppendVarint(binary.AppendVarint([]byte{chunkVersion}, s.min), s.max)
}

func decodeSpan(b []byte) (span, bool) {
	if len(b) < 3 || b[0] != chunkVersion {
		return span{}, false
	}
	lo, n := binary.Varint(b[1:])
	if n <= 0 {
		return span{}, false
	}
	hi, m := binary.Varint(b[1+n:])
	if m <= 0 || hi < lo {
		return span{}, false
	}
	return span{lo, hi, true}, true
}

// merge folds the buckets touched by a flush into spans (reading a bucket's
// span as stored the first time this indexer touches it) and returns the
// spans to write.
func (ix *Indexer) merge(ctx context.Context, spans, touched map[uint64]span) map[uint64]span {
	out := make(map[uint64]span, len(touched))
	for b, t := range touched {
		cur, ok := spans[b]
		if !ok {
			cur = ix.storedSpan(ctx, b)
		}
		cur = cur.union(t)
		spans[b] = cur
		out[b] = cur
	}
	return out
}

// storedSpan is bucket b's span as stored; when it cannot be read, a span
// covering all time, so that readers never skip the bucket for its time.
func (ix *Indexer) storedSpan(ctx context.Context, b uint64) span {
	all := span{math.MinInt64, math.MaxInt64, true}
	s, err := ix.cfg.JS.Stream(ctx, bus.StreamAuditIndex)
	if err != nil {
		return all
	}
	m, err := s.GetLastMsgForSubject(ctx, bus.AuditIndexSpanSubject(ix.cfg.Tenant, b))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return span{}
	}
	if err != nil {
		return all
	}
	sp, ok := decodeSpan(m.Data)
	if !ok {
		return all
	}
	return sp
}
