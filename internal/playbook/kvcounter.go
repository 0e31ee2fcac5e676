package playbook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KVCounter is the Counter the engine uses: threshold state in a JetStream
// key-value bucket (the shared responder_state bucket), one key per playbook
// and threshold key, updated with compare-and-set so that several engine
// processes count together and state survives restarts.
//
// Keys are "<Prefix>.<playbook>.<sha256 of the threshold key, hex, 32>";
// values are ThresholdState as JSON. A key whose threshold fired is deleted
// (a later event creates it again); keys that never reach their count are
// left with entries older than the window, pruned when next touched.
type KVCounter struct {
	KV jetstream.KeyValue
	// Prefix of every key; default "threshold".
	Prefix string
	// MaxAttempts bounds compare-and-set retries under contention; default 64.
	MaxAttempts int
}

// Observe applies o with compare-and-set, retrying on conflict.
func (k *KVCounter) Observe(ctx context.Context, o Observation) (Fired, error) {
	if k.KV == nil {
		return Fired{}, errors.New("playbook: KVCounter without a bucket")
	}
	prefix := k.Prefix
	if prefix == "" {
		prefix = "threshold"
	}
	attempts := k.MaxAttempts
	if attempts <= 0 {
		attempts = 64
	}
	sum := sha256.Sum256([]byte(o.Key))
	key := prefix + "." + o.Playbook + "." + hex.EncodeToString(sum[:16])
	for i := 0; i < attempts; i++ {
		var st ThresholdState
		var rev uint64
		e, err := k.KV.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return Fired{}, fmt.Errorf("threshold %s: get %s: %w", o.Playbook, key, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				// A value we cannot read is replaced: counting restarts.
				st = ThresholdState{}
			}
		}
		fire, n, changed := st.Apply(o)
		if !changed {
			return Fired{Fired: fire, Count: n}, nil
		}
		data, err := json.Marshal(&st)
		if err != nil {
			return Fired{}, fmt.Errorf("threshold %s: %w", o.Playbook, err)
		}
		if rev == 0 {
			_, err = k.KV.Create(ctx, key, data)
		} else {
			_, err = k.KV.Update(ctx, key, data, rev)
		}
		if err == nil {
			return Fired{Fired: fire, Count: n}, nil
		}
		if conflict(err) {
			continue
		}
		return Fired{}, fmt.Errorf("threshold %s: store %s: %w", o.Playbook, key, err)
	}
	return Fired{}, fmt.Errorf("threshold %s: key %s: still contended after %d attempts", o.Playbook, key, attempts)
}

// conflict: another writer got there first (create of an existing key, or an
// update whose expected revision is stale).
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
