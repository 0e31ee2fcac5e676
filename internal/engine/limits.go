package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// Playbook-level safety state, kept in the shared KV bucket with compare-and-set so
// that several engine processes agree.

type suppressionEntry struct {
	EventID string    `json:"event_id"`
	Until   time.Time `json:"until"`
}

// suppress claims the suppression window of key for eventID. It returns held=true
// with the holder's entry when another event holds an unexpired window. The same
// event re-handled (after a crash) keeps its claim.
func suppress(ctx context.Context, kv jetstream.KeyValue, key, eventID string, window time.Duration, now time.Time) (held bool, holder suppressionEntry, err error) {
	k := "suppress." + bus.KeyPart(key)
	mine, _ := json.Marshal(suppressionEntry{EventID: eventID, Until: now.Add(window)})
	for attempt := 0; attempt < 10; attempt++ {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := kv.Create(ctx, k, mine); err == nil {
				return false, suppressionEntry{}, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, suppressionEntry{}, fmt.Errorf("suppression %s: %w", key, err)
			}
			continue // lost the race: read the winner
		}
		if err != nil {
			return false, suppressionEntry{}, fmt.Errorf("suppression %s: %w", key, err)
		}
		var cur suppressionEntry
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			cur = suppressionEntry{} // unreadable: treat as expired and take over
		}
		if cur.EventID == eventID {
			return false, cur, nil
		}
		if now.Before(cur.Until) {
			return true, cur, nil
		}
		if _, err := kv.Update(ctx, k, mine, e.Revision()); err == nil {
			return false, suppressionEntry{}, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, suppressionEntry{}, fmt.Errorf("suppression %s: %w", key, err)
		}
	}
	return false, suppressionEntry{}, fmt.Errorf("suppression %s: too much contention", key)
}

type blastEntry struct {
	Count  int      `json:"count"`
	Events []string `json:"events,omitempty"` // events counted, so a re-handled event is not counted twice
}

// blastRadius counts one firing of a playbook in the current window (tumbling,
// aligned to the window length) and reports whether it is within max. An event
// already counted is not counted again.
func blastRadius(ctx context.Context, kv jetstream.KeyValue, playbook, eventID string, max int, window time.Duration, now time.Time) (ok bool, count int, err error) {
	if max <= 0 || window <= 0 {
		return true, 0, nil
	}
	start := now.Truncate(window)
	k := fmt.Sprintf("blast.playbook.%s.%d", bus.KeyPart(playbook), start.Unix())
	for attempt := 0; attempt < 20; attempt++ {
		var cur blastEntry
		var rev uint64
		e, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, 0, fmt.Errorf("blast radius %s: %w", playbook, err)
		default:
			rev = e.Revision()
			_ = json.Unmarshal(e.Value(), &cur)
		}
		for _, id := range cur.Events {
			if id == eventID {
				return true, cur.Count, nil
			}
		}
		if cur.Count >= max {
			return false, cur.Count, nil
		}
		cur.Count++
		cur.Events = append(cur.Events, eventID)
		b, _ := json.Marshal(cur)
		if rev == 0 {
			_, err = kv.Create(ctx, k, b)
		} else {
			_, err = kv.Update(ctx, k, b, rev)
		}
		if err == nil {
			return true, cur.Count, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, 0, fmt.Errorf("blast radius %s: %w", playbook, err)
		}
	}
	return false, 0, fmt.Errorf("blast radius %s: too much contention", playbook)
}
