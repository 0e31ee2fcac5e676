package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// BlastLimits bound how many requests may act in one window (tumbling, aligned
// to the window length), counted in the shared KV bucket with compare-and-set so
// that every worker of every process agrees. Requests by the engine itself
// (expiry unblocks) are not counted.
type BlastLimits struct {
	// PerAction is the most requests of one action per window (absent or 0 =
	// unlimited).
	PerAction map[Name]int
	// PerPlaybook is the most requests of one playbook per window, all actions
	// together (0 = unlimited).
	PerPlaybook int
	// Window is the counting window (default 1h).
	Window time.Duration
}

// DefaultBlastLimits are the limits a new deployment starts with: destructive
// actions are bounded, restoring ones are not.
func DefaultBlastLimits() BlastLimits {
	return BlastLimits{
		PerAction: map[Name]int{
			DisableUser: 25, ResetPassword: 25, ConfirmCompromised: 50, DismissRisk: 50,
			DisableForwardRules: 50, DeleteForwardRules: 50, PurgeMail: 10, BlockIP: 200,
		},
		PerPlaybook: 100,
		Window:      time.Hour,
	}
}

type blastEntry struct {
	Count    int      `json:"count"`
	Requests []string `json:"requests,omitempty"` // counted requests, so a redelivery is not counted twice
}

// checkBlast counts req against its limits and returns a refusal reason, or ""
// when it may act.
func (w *Worker) checkBlast(ctx context.Context, req *Request) (string, error) {
	if req.RequestedBy.Kind == "engine" {
		return "", nil
	}
	l := w.cfg.Blast
	win := l.Window
	if win <= 0 {
		win = time.Hour
	}
	start := w.cfg.Now().UTC().Truncate(win)
	if pb := req.Playbook(); pb != "" && l.PerPlaybook > 0 {
		k := fmt.Sprintf("blast.actions.playbook.%s.%d", bus.Token(pb), start.Unix())
		ok, n, err := countOnce(ctx, w.cfg.KV, k, req.ID, l.PerPlaybook)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("blast radius: playbook %s already made %d requests in the %s window starting %s (limit %d)", pb, n, win, start.Format(time.RFC3339), l.PerPlaybook), nil
		}
	}
	if max := l.PerAction[req.Action]; max > 0 {
		k := fmt.Sprintf("blast.actions.action.%s.%d", bus.Token(string(req.Action)), start.Unix())
		ok, n, err := countOnce(ctx, w.cfg.KV, k, req.ID, max)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("blast radius: %d %s requests already in the %s window starting %s (limit %d)", n, req.Action, win, start.Format(time.RFC3339), max), nil
		}
	}
	return "", nil
}

// countOnce adds id to the counter at key unless it is there already or the
// counter reached max. Compare-and-set; retried on conflict.
func countOnce(ctx context.Context, kv jetstream.KeyValue, key, id string, max int) (ok bool, count int, err error) {
	for attempt := 0; attempt < 50; attempt++ {
		var cur blastEntry
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, 0, fmt.Errorf("blast radius %s: %w", key, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return false, 0, fmt.Errorf("blast radius %s: %w", key, err)
			}
		}
		if slices.Contains(cur.Requests, id) {
			return true, cur.Count, nil
		}
		if cur.Count >= max {
			return false, cur.Count, nil
		}
		cur.Count++
		cur.Requests = append(cur.Requests, id)
		b, _ := json.Marshal(cur)
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return true, cur.Count, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return false, 0, fmt.Errorf("blast radius %s: %w", key, err)
		}
	}
	return false, 0, fmt.Errorf("blast radius %s: too much contention", key)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
