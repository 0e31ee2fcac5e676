package playbooktest

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// maxRecordBytes bounds one record read by Run.
const maxRecordBytes = 16 << 20

// RecordResult is what `playbook test --json` prints for one record, one JSON
// object per line.
type RecordResult struct {
	File    string        `json:"file"`
	Index   int           `json:"index"`
	Source  event.Source  `json:"source,omitempty"`
	Kind    string        `json:"kind,omitempty"`
	User    string        `json:"user,omitempty"`
	IP      string        `json:"ip,omitempty"`
	Matches []MatchResult `json:"matches"`
	// Error says why the record could not be read or matched completely.
	Error string `json:"error,omitempty"`
}

// MatchResult is one playbook that fired, in RecordResult.
type MatchResult struct {
	Playbook string         `json:"playbook"`
	Reason   string         `json:"reason,omitempty"`
	Actions  []ActionResult `json:"actions"`
}

// ActionResult is one action a playbook would request.
type ActionResult struct {
	Action   actions.Name   `json:"action"`
	Target   actions.Target `json:"target"`
	Params   map[string]any `json:"params"`
	DryRun   bool           `json:"dry_run,omitempty"`
	Approval string         `json:"approval,omitempty"`
}

// Run reads records as Microsoft publishes them from r (one JSON
// object, a JSON array, NDJSON, or a Graph list response with "value", in any
// mix), recognises each record's source by its shape (event.Normalize),
// matches it against set and writes, per record, which playbooks fire and the
// actions they would request, to w as it goes: text, or with jsonOut one
// RecordResult per line. It touches nothing else.
//
// Memory stays flat: records are decoded one at a time, also inside a large
// array or "value" list. A record that cannot be recognised is reported in
// the output and reading goes on; invalid JSON stops the file with an error.
//
// Threshold triggers are evaluated over the records of the run in time order,
// with an in-memory Counter: when the set has any, the records of the sources
// they count pass through a reorder buffer of the reorderWindow earliest
// records, so their results are written in time order (each with its index in
// the input), a record that arrives later than reorderWindow records after its
// time being evaluated when it arrives; records of other sources are written
// as they are read. Memory stays bounded by the buffer.
func Run(ctx context.Context, set *playbook.Set, r io.Reader, file string, w io.Writer, jsonOut bool) error {
	rs := newRecordStream(r)
	var counter playbook.Counter
	if set.Stateful() {
		counter = playbook.NewMemCounter()
	}
	write := func(res RecordResult) error {
		var out []byte
		if jsonOut {
			b, err := json.Marshal(res)
			if err != nil {
				return fmt.Errorf("playbook test: %s[%d]: %w", file, res.Index, err)
			}
			out = append(b, '\n')
		} else {
			out = formatText(res)
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("playbook test: write: %w", err)
		}
		return nil
	}
	stateful := statefulSourcesOf(set)
	var pending recordHeap
	index := 0
	err := rs.each(func(raw json.RawMessage) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := index
		index++
		env, err := event.Normalize("", raw)
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			// Not JSON: the file is not what it claims to be.
			return fmt.Errorf("playbook test: %s: record %d: %w", file, i, err)
		}
		if counter == nil || err != nil || !stateful.holds(env.Source) {
			return write(testOne(ctx, set, counter, env, err, file, i))
		}
		heap.Push(&pending, pendingRecord{env: env, index: i})
		if pending.Len() > reorderWindow {
			p := heap.Pop(&pending).(pendingRecord)
			return write(testOne(ctx, set, counter, p.env, nil, file, p.index))
		}
		return nil
	}, file)
	for err == nil && pending.Len() > 0 {
		p := heap.Pop(&pending).(pendingRecord)
		err = write(testOne(ctx, set, counter, p.env, nil, file, p.index))
	}
	return err
}

// sourceSet is the sources whose events a threshold trigger may count or
// take as its follow-up (any: every source).
type sourceSet struct {
	any bool
	m   map[event.Source]bool
}

func (s sourceSet) holds(src event.Source) bool { return s.any || s.m[src] }

// statefulSourcesOf: only records of these sources go through the reorder
// buffer; the others are matched and written as they are read.
func statefulSourcesOf(set *playbook.Set) sourceSet {
	out := sourceSet{m: map[event.Source]bool{}}
	for _, p := range set.Playbooks() {
		th := p.Trigger.Threshold
		if th == nil {
			continue
		}
		if p.Trigger.Source == "" {
			out.any = true
		}
		out.m[p.Trigger.Source] = true
		if th.Then != nil && th.Then.Source != "" { // "" is the trigger's source
			out.m[th.Then.Source] = true
		}
	}
	return out
}

// reorderWindow is how many records `playbook test` holds to evaluate
// threshold triggers in time order.
const reorderWindow = 4096

type pendingRecord struct {
	env   event.Envelope
	index int
}

// recordHeap orders records by time, then input order.
type recordHeap []pendingRecord

func (h recordHeap) Len() int { return len(h) }
func (h recordHeap) Less(i, j int) bool {
	if !h[i].env.Time.Equal(h[j].env.Time) {
		return h[i].env.Time.Before(h[j].env.Time)
	}
	return h[i].index < h[j].index
}
func (h recordHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)   { *h = append(*h, x.(pendingRecord)) }
func (h *recordHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pendingRecord{}
	*h = old[:len(old)-1]
	return x
}

func testOne(ctx context.Context, set *playbook.Set, counter playbook.Counter, env event.Envelope, normErr error, file string, index int) RecordResult {
	res := RecordResult{File: file, Index: index, Matches: []MatchResult{}}
	if normErr != nil {
		res.Error = normErr.Error()
		return res
	}
	res.Source, res.Kind, res.User, res.IP = env.Source, env.Kind, env.User, env.IP
	var matches []playbook.Match
	var err error
	if counter != nil {
		matches, err = set.MatchStateful(ctx, &env, counter)
	} else {
		matches, err = set.Match(&env)
	}
	if err != nil {
		res.Error = err.Error()
	}
	for _, m := range matches {
		mr := MatchResult{Playbook: m.Playbook, Reason: m.Reason, Actions: []ActionResult{}}
		for i, st := range m.Steps {
			ar := ActionResult{Action: st.Action, Target: st.Target, Params: st.Params, DryRun: st.DryRun}
			if ar.Params == nil {
				ar.Params = map[string]any{}
			}
			if i < len(m.Approval) {
				ar.Approval = m.Approval[i]
			}
			mr.Actions = append(mr.Actions, ar)
		}
		res.Matches = append(res.Matches, mr)
	}
	return res
}

func formatText(res RecordResult) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s[%d]", res.File, res.Index)
	if res.Source != "" {
		fmt.Fprintf(&b, " %s %q", res.Source, res.Kind)
	}
	if res.User != "" {
		fmt.Fprintf(&b, " user=%s", res.User)
	}
	if res.IP != "" {
		fmt.Fprintf(&b, " ip=%s", res.IP)
	}
	if len(res.Matches) == 0 {
		b.WriteString(": no playbook fires")
	}
	b.WriteByte('\n')
	if res.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", strings.ReplaceAll(res.Error, "\n", "\n    "))
	}
	for _, m := range res.Matches {
		fmt.Fprintf(&b, "  %s fires: %s\n", m.Playbook, m.Reason)
		for i, a := range m.Actions {
			fmt.Fprintf(&b, "    %d. %s", i+1, a.Action)
			t := a.Target
			if t.User != "" {
				fmt.Fprintf(&b, " user=%s", t.User)
			}
			if t.IP != "" {
				fmt.Fprintf(&b, " ip=%s", t.IP)
			}
			if t.MessageID != "" {
				fmt.Fprintf(&b, " message_id=%s", t.MessageID)
			}
			if len(a.Params) > 0 {
				p, _ := json.Marshal(a.Params)
				fmt.Fprintf(&b, " params=%s", p)
			}
			if a.DryRun {
				b.WriteString(" [dry run]")
			}
			if a.Approval != "" {
				b.WriteString(" [approval " + a.Approval + "]")
			}
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
