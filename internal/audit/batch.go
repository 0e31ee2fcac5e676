package audit

import (
	"context"
)

// AppendBatch stores rs as the next records of the chain, in order, and
// returns them as stored. It queues them together and stores them as Append
// does (pipelined publishes, each expecting the record before it; retried on a
// conflict or an unanswered publish), so it suits bulk loads (benchmarks,
// imports) and the engine alike. On an error some of rs may have been stored;
// each has its id as Nats-Msg-Id, so appending the same records again stores
// each once within the duplicate window.
func (w *Writer) AppendBatch(ctx context.Context, rs []Record) ([]Record, error) {
	ps := make([]*pendingAppend, len(rs))
	for i, r := range rs {
		r, err := w.prepare(r)
		if err != nil {
			return nil, err
		}
		ps[i] = &pendingAppend{rec: r, done: make(chan struct{})}
	}
	w.qmu.Lock()
	w.queue = append(w.queue, ps...)
	w.qmu.Unlock()
	out := make([]Record, len(rs))
	var first error
	for i, p := range ps {
		r, err := w.await(ctx, p)
		if err != nil && first == nil {
			first = err
		}
		out[i] = r
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}
