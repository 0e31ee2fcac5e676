package matcher

import (
	"context"
	"encoding/json"
	"time"

	"github.com/responder-sec/responder/internal/bus"
)

// Playbook-level safety state, kept in the shared KV bucket with
// compare-and-set (bus.Update) so that several engine processes agree.

type suppressionEntry struct {
	EventID string    `json:"event_id"`
	Until   time.Time `json:"until"`
}

// suppress claims the suppression window of key for eventID. It returns
// held=true with the holder's entry when another event holds an unexpired
// window. The same event re-handled (after a crash) keeps its claim; an
// expired or unreadable window is taken over.
func suppress(ctx context.Context, kv bus.KV, key, eventID string, window time.Duration, now time.Time) (held bool, holder suppressionEntry, err error) {
	mine, err := json.Marshal(suppressionEntry{EventID: eventID, Until: now.Add(window)})
	if err != nil {
		return false, suppressionEntry{}, err
	}
	err = bus.Update(ctx, kv, bus.SuppressionKey(key), 10, func(cur []byte) ([]byte, bool, error) {
		held, holder = false, suppressionEntry{}
		if cur == nil {
			return mine, true, nil
		}
		var e suppressionEntry
		if json.Unmarshal(cur, &e) != nil {
			return mine, true, nil // unreadable: treat as expired and take over
		}
		if e.EventID == eventID {
			holder = e
			return nil, false, nil
		}
		if now.Before(e.Until) {
			held, holder = true, e
			return nil, false, nil
		}
		return mine, true, nil
	})
	if err != nil {
		return false, suppressionEntry{}, err
	}
	return held, holder, nil
}

// blastRadius counts one firing of a playbook in the current window (tumbling,
// aligned to the window length) and reports whether it is within max. An event
// already counted is not counted again.
func blastRadius(ctx context.Context, kv bus.KV, playbook, eventID string, max int, window time.Duration, now time.Time) (ok bool, count int, err error) {
	if max <= 0 || window <= 0 {
		return true, 0, nil
	}
	return bus.CountOnce(ctx, kv, bus.PlaybookBlastKey(playbook, now.Truncate(window)), eventID, max)
}
