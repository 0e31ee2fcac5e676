package actions

import (
	"context"
	"fmt"
	"time"

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
	per := map[Name]int{}
	for _, s := range Specs() {
		if s.BlastLimit > 0 {
			per[s.Name] = s.BlastLimit
		}
	}
	return BlastLimits{PerAction: per, PerPlaybook: 100, Window: time.Hour}
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
		k := bus.ActionBlastPlaybookKey(pb, start)
		ok, n, err := bus.CountOnce(ctx, w.cfg.KV, k, req.ID, l.PerPlaybook)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("blast radius: playbook %s already made %d requests in the %s window starting %s (limit %d)", pb, n, win, start.Format(time.RFC3339), l.PerPlaybook), nil
		}
	}
	if max := l.PerAction[req.Action]; max > 0 {
		k := bus.ActionBlastActionKey(string(req.Action), start)
		ok, n, err := bus.CountOnce(ctx, w.cfg.KV, k, req.ID, max)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("blast radius: %d %s requests already in the %s window starting %s (limit %d)", n, req.Action, win, start.Format(time.RFC3339), max), nil
		}
	}
	return "", nil
}
