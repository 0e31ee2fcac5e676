package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// AppendBatch stores rs as the next records of the chain, in order, with the
// pipelined publishes of one writer: each carries the sequence it expects
// before it (Nats-Expected-Last-Sequence), so the server stores them in order
// or refuses the rest once another writer got in between. It fills each
// record as Append does and returns them as stored.
//
// It is meant for bulk loads (benchmarks, imports), not for the engine's
// records: it does not retry. On an error some leading part of rs may have
// been stored (each with its own id as Nats-Msg-Id, so appending the same
// records again stores each once within the duplicate window).
func (w *Writer) AppendBatch(ctx context.Context, rs []Record) ([]Record, error) {
	prepared := make([]Record, len(rs))
	for i, r := range rs {
		if r.TenantID == "" || r.Outcome == "" {
			return nil, fmt.Errorf("%w: record %d: tenant_id and outcome are required", ErrInvalidRecord, i)
		}
		if r.ID == "" {
			id, err := uuid.NewRandom()
			if err != nil {
				return nil, fmt.Errorf("audit: record id: %w", err)
			}
			r.ID = id.String()
		}
		if r.Time.IsZero() {
			r.Time = w.now()
		}
		r.Time = r.Time.UTC()
		if w.signerErr != nil {
			return nil, fmt.Errorf("audit: append %s: signing key: %w", r.ID, w.signerErr)
		}
		r.Seq, r.PrevHash, r.Hash, r.Signer, r.Sig = 0, "", "", w.signerKey, ""
		n, err := normalize(r)
		if err != nil {
			return nil, err
		}
		prepared[i] = n
	}
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: append batch: %w", ctx.Err())
	}
	defer func() { <-w.sem }()
	if !w.tailOK {
		if err := w.loadTail(ctx); err != nil {
			return nil, fmt.Errorf("audit: append batch: %w", err)
		}
	}
	prev, at := w.tail, w.tailAt
	futures := make([]jetstream.PubAckFuture, len(prepared))
	w.tailOK = false // whatever happens, the next append reloads the tail
	for i := range prepared {
		rec := &prepared[i]
		rec.Seq = at + 1
		rec.PrevHash = prev.Hash
		h, err := rec.ComputeHash()
		if err != nil {
			return nil, fmt.Errorf("audit: append %s: %w", rec.ID, err)
		}
		rec.Hash = h
		if w.signer != nil {
			if err := signRecord(w.signer, rec); err != nil {
				return nil, err
			}
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("audit: append %s: encode: %w", rec.ID, err)
		}
		f, err := w.js.PublishMsgAsync(&nats.Msg{Subject: bus.AuditSubject(rec.TenantID, string(rec.Outcome), rec.Action), Data: data},
			jetstream.WithExpectStream(w.stream), jetstream.WithExpectLastSequence(at), jetstream.WithMsgID(rec.ID))
		if err != nil {
			return nil, fmt.Errorf("audit: append %s: publish: %w", rec.ID, err)
		}
		futures[i] = f
		prev, at = *rec, rec.Seq
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Sequence != prepared[i].Seq || ack.Duplicate {
				return nil, fmt.Errorf("%w: record %s names seq %d, stored at %d (duplicate: %v)", ErrSequence, prepared[i].ID, prepared[i].Seq, ack.Sequence, ack.Duplicate)
			}
		case err := <-f.Err():
			return nil, fmt.Errorf("audit: append %s: %w", prepared[i].ID, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("audit: append batch: %w", ctx.Err())
		}
	}
	if n := len(prepared); n > 0 {
		w.tail, w.tailAt, w.tailOK = prepared[n-1], prepared[n-1].Seq, true
		if w.head != nil {
			w.head.observe(prepared[n-1])
		}
	}
	return prepared, nil
}
