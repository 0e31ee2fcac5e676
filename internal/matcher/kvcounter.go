package matcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/playbook"
)

// KVCounter is the playbook.Counter the matcher uses: threshold state in a
// JetStream key-value bucket (the shared responder_state bucket), one key per
// playbook and threshold key (bus.ThresholdKey, the threshold key hashed),
// updated with compare-and-set (bus.Update) so that several engine processes
// count together and state survives restarts. Values are
// playbook.ThresholdState as JSON. A key whose threshold fired is emptied by
// Apply (a later event starts again); keys that never reach their count keep
// entries older than the window, pruned when next touched.
type KVCounter struct {
	KV bus.KV
	// MaxAttempts bounds compare-and-set retries under contention
	// (default bus.DefaultUpdateAttempts).
	MaxAttempts int
}

// Observe applies o with compare-and-set, retrying on conflict.
func (k *KVCounter) Observe(ctx context.Context, o playbook.Observation) (playbook.Fired, error) {
	if k.KV == nil {
		return playbook.Fired{}, errors.New("matcher: KVCounter without a bucket")
	}
	sum := sha256.Sum256([]byte(o.Key))
	key := bus.ThresholdKey(o.Playbook, hex.EncodeToString(sum[:16]))
	var out playbook.Fired
	err := bus.Update(ctx, k.KV, key, k.MaxAttempts, func(cur []byte) ([]byte, bool, error) {
		var st playbook.ThresholdState
		if cur != nil && json.Unmarshal(cur, &st) != nil {
			// A value we cannot read is replaced: counting restarts.
			st = playbook.ThresholdState{}
		}
		fire, n, changed := st.Apply(o)
		out = playbook.Fired{Fired: fire, Count: n}
		if !changed {
			return nil, false, nil
		}
		data, err := json.Marshal(&st)
		return data, true, err
	})
	if err != nil {
		return playbook.Fired{}, fmt.Errorf("threshold %s: %w", o.Playbook, err)
	}
	return out, nil
}
