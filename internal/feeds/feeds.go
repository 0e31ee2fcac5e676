package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
)

// PublishEvent stores one envelope on EVENTS, deduplicated by its id. It returns
// whether the stream already held it.
func PublishEvent(ctx context.Context, pub jetstream.Publisher, env event.Envelope) (dup bool, err error) {
	if env.ID == "" {
		return false, errors.New("feeds: event without id")
	}
	data, err := json.Marshal(env)
	if err != nil {
		return false, fmt.Errorf("feeds: encode event %s: %w", env.ID, err)
	}
	ack, err := pub.Publish(ctx, bus.EventSubject(env.TenantID, string(env.Source), env.Kind), data, jetstream.WithMsgID(env.ID))
	if err != nil {
		return false, fmt.Errorf("feeds: publish event %s: %w", env.ID, err)
	}
	return ack.Duplicate, nil
}

// Checkpoint is a feed cursor kept in the state bucket under feed.<name>.
type Checkpoint struct {
	kv  jetstream.KeyValue
	key string
}

// NewCheckpoint returns the checkpoint for one feed (and content type).
func NewCheckpoint(kv jetstream.KeyValue, feed string, part ...string) *Checkpoint {
	return &Checkpoint{kv: kv, key: bus.CheckpointKey(feed, part...)}
}

// Load decodes the stored cursor into v; found is false when none is stored.
func (c *Checkpoint) Load(ctx context.Context, v any) (found bool, err error) {
	e, err := c.kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("feeds: load checkpoint %s: %w", c.key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("feeds: decode checkpoint %s: %w", c.key, err)
	}
	return true, nil
}

// Save stores the cursor.
func (c *Checkpoint) Save(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("feeds: encode checkpoint %s: %w", c.key, err)
	}
	if _, err := c.kv.Put(ctx, c.key, data); err != nil {
		return fmt.Errorf("feeds: save checkpoint %s: %w", c.key, err)
	}
	return nil
}
