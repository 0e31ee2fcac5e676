package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// KV is the part of a key-value bucket a compare-and-set update needs.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// DefaultUpdateAttempts bounds compare-and-set retries when the caller sets none.
const DefaultUpdateAttempts = 64

// ErrContended: the key kept changing under every attempt.
var ErrContended = errors.New("bus: key still contended")

// Update reads key, asks change for its next value and writes it with
// compare-and-set (create when the key is absent, update at the revision read),
// retrying from the read when another writer got there first. change gets the
// current value (nil when absent) and returns the next value and whether to
// write it; an error from change stops Update and is returned as is. attempts
// bounds the retries (<= 0: DefaultUpdateAttempts). This is the one
// compare-and-set loop of the code base: counters, windows and claims are
// built on it so that several engine processes agree.
func Update(ctx context.Context, kv KV, key string, attempts int, change func(cur []byte) (next []byte, write bool, err error)) error {
	if attempts <= 0 {
		attempts = DefaultUpdateAttempts
	}
	for range attempts {
		var cur []byte
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("kv %s: get: %w", key, err)
		default:
			rev, cur = e.Revision(), e.Value()
		}
		next, write, err := change(cur)
		if err != nil || !write {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, next)
		} else {
			_, err = kv.Update(ctx, key, next, rev)
		}
		if err == nil {
			return nil
		}
		if !Conflict(err) {
			return fmt.Errorf("kv %s: store: %w", key, err)
		}
	}
	return fmt.Errorf("kv %s: %w after %d attempts", key, ErrContended, attempts)
}

// Conflict reports whether err means another writer got there first: a create
// of an existing key, or an update whose expected revision is stale.
func Conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// onceCounter is the value of a CountOnce key: how many distinct ids were
// counted, and which. Counters written before the counter had one home named
// the ids "events" (the matcher) or "requests" (the workers); both are read.
type onceCounter struct {
	Count    int      `json:"count"`
	IDs      []string `json:"ids,omitempty"`
	Events   []string `json:"events,omitempty"`
	Requests []string `json:"requests,omitempty"`
}

// CountOnce counts id at key unless it is counted there already or the count
// reached max, with compare-and-set. ok reports that id is (now or already)
// counted within max; count is the count after the call. An id counted before
// stays ok, so a redelivered message is neither counted twice nor refused.
// A value that cannot be read is an error (a limit must not reset silently).
func CountOnce(ctx context.Context, kv KV, key, id string, max int) (ok bool, count int, err error) {
	err = Update(ctx, kv, key, 0, func(cur []byte) ([]byte, bool, error) {
		var c onceCounter
		if cur != nil {
			if err := json.Unmarshal(cur, &c); err != nil {
				return nil, false, fmt.Errorf("kv %s: counter: %w", key, err)
			}
			c.IDs = append(append(c.IDs, c.Events...), c.Requests...)
			c.Events, c.Requests = nil, nil
		}
		count = c.Count
		if slices.Contains(c.IDs, id) {
			ok = true
			return nil, false, nil
		}
		if c.Count >= max {
			ok = false
			return nil, false, nil
		}
		c.Count++
		c.IDs = append(c.IDs, id)
		count, ok = c.Count, true
		b, err := json.Marshal(c)
		return b, true, err
	})
	if err != nil {
		return false, 0, err
	}
	return ok, count, nil
}
