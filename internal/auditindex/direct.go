package auditindex

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// stored is one message of a stream as read by a direct get.
type stored struct {
	seq     uint64
	subject string
	data    []byte
}

// directBatchMax bounds one batch request (and so the replies buffered for it).
const directBatchMax = 1024

// directBatch reads up to n messages of stream from sequence seq on (only those
// on subject, if not empty) with one batched direct get (the stream must allow
// direct gets), calling fn for each in stream order until fn returns false. It
// returns how many messages it read and the last sequence read (0 if none).
//
// A batched direct get is JSApiMsgGetRequest with batch and next_by_subj: the
// server answers with the messages and then a "204 EOB" status message, or a
// "404" status when nothing matches
// (https://github.com/nats-io/nats-architecture-and-design/blob/main/adr/ADR-31.md).
func directBatch(ctx context.Context, nc *nats.Conn, stream string, seq uint64, subject string, n int, fn func(stored) bool) (int, uint64, error) {
	n = min(n, directBatchMax)
	if n <= 0 {
		return 0, 0, nil
	}
	req := struct {
		Seq     uint64 `json:"seq,omitempty"`
		NextFor string `json:"next_by_subj,omitempty"`
		Batch   int    `json:"batch"`
	}{Seq: seq, NextFor: subject, Batch: n}
	if req.NextFor == "" {
		req.Seq = max(seq, 1)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, 0, err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return 0, 0, fmt.Errorf("direct get %s: %w", stream, err)
	}
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return 0, 0, fmt.Errorf("direct get %s: %w", stream, err)
	}
	var (
		read int
		last uint64
		stop bool
	)
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return read, last, fmt.Errorf("direct get %s: %w", stream, err)
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204", "404":
				return read, last, nil
			default:
				return read, last, fmt.Errorf("direct get %s: status %s %s", stream, status, m.Header.Get("Description"))
			}
		}
		if stop {
			continue // drain the rest of the batch up to its end of batch
		}
		s, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return read, last, fmt.Errorf("direct get %s: reply without a sequence", stream)
		}
		read++
		last = s
		if !fn(stored{seq: s, subject: m.Header.Get("Nats-Subject"), data: m.Data}) {
			stop = true
		}
	}
}

// directReq is one direct get: a message by sequence (Batch 0), or up to
// Batch messages from Seq on (on NextFor, if set).
type directReq struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
	// MultiLast: the last message of every subject matching these filters
	// (at most 1024; Batch must be set so the reply ends with its EOB).
	MultiLast []string `json:"multi_last,omitempty"`
}

// directMany sends every request at once on one reply subscription and
// returns each one's messages (none for a sequence or subject with nothing
// stored): one round trip for the lot instead of one each.
func directMany(ctx context.Context, nc *nats.Conn, stream string, reqs []directReq) ([][]stored, error) {
	out := make([][]stored, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	prefix := nc.NewInbox()
	sub, err := nc.SubscribeSync(prefix + ".*")
	if err != nil {
		return nil, fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("direct get %s: %w", stream, err)
	}
	api := "$JS.API.DIRECT.GET." + stream
	for i, r := range reqs {
		body, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		if err := nc.PublishRequest(api, prefix+"."+strconv.Itoa(i), body); err != nil {
			return nil, fmt.Errorf("direct get %s: %w", stream, err)
		}
	}
	finished := make([]bool, len(reqs))
	open := len(reqs)
	for open > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("direct get %s: %w", stream, err)
		}
		i, err := strconv.Atoi(m.Subject[len(prefix)+1:])
		if err != nil || i < 0 || i >= len(reqs) || finished[i] {
			continue
		}
		if status := m.Header.Get("Status"); status != "" {
			if status != "204" && status != "404" {
				return nil, fmt.Errorf("direct get %s: status %s %s", stream, status, m.Header.Get("Description"))
			}
			finished[i] = true
			open--
			continue
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("direct get %s: reply without a sequence", stream)
		}
		out[i] = append(out[i], stored{seq: seq, subject: m.Header.Get("Nats-Subject"), data: m.Data})
		if reqs[i].Batch == 0 {
			finished[i] = true
			open--
		}
	}
	return out, nil
}
