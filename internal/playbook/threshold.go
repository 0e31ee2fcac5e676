package playbook

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/event"
)

// maxThresholdCount bounds a threshold's count (the state keeps at most this
// many entries per key).
const maxThresholdCount = 1000

// Observation is one event that a threshold trigger counts, or a follow-up
// event for it. Set.MatchStateful builds it; a Counter applies it.
type Observation struct {
	Playbook string
	// Key is the threshold's by values, lower-cased, joined with "/".
	Key     string
	EventID string
	Time    time.Time
	// Value is the distinct value counted ("" when events are counted).
	Value string
	// FollowUp marks a then event: it fires an armed threshold and is not counted.
	FollowUp bool

	// The threshold, so that a Counter needs no playbook.
	Count    int
	Distinct bool
	Window   time.Duration
	Then     bool
}

// Fired is what a Counter reports for one observation.
type Fired struct {
	Fired bool
	// Count is the count (or distinct count) in the window after the observation.
	Count int
}

// Counter keeps threshold state. The engine implements it over the KV bucket
// (matcher.KVCounter) so that state survives restarts and several engine processes
// count together; MemCounter serves `playbook test` and tests. Observe must
// apply o to the state of (o.Playbook, o.Key) atomically, as
// ThresholdState.Apply defines.
type Counter interface {
	Observe(ctx context.Context, o Observation) (Fired, error)
}

// CounterFunc adapts a function to Counter.
type CounterFunc func(ctx context.Context, o Observation) (Fired, error)

// Observe calls f.
func (f CounterFunc) Observe(ctx context.Context, o Observation) (Fired, error) { return f(ctx, o) }

// ThresholdState is the state of one key of one threshold playbook.
type ThresholdState struct {
	Entries []ThresholdEntry `json:"e,omitempty"`
	// FiredBy is the event that last fired: seen again (a redelivery), it
	// fires again, so that an engine that crashed after storing the state but
	// before requesting the actions requests them (with the same request ids).
	FiredBy string `json:"f,omitempty"`
}

// ThresholdEntry is one counted event (or, with distinct, the latest event
// of one distinct value).
type ThresholdEntry struct {
	T  int64  `json:"t"` // unix nanoseconds of the event time
	V  string `json:"v,omitempty"`
	ID string `json:"id,omitempty"`
}

// Apply applies o to the state and reports whether the threshold fires, the
// count after it, and whether the state changed (nothing to store if not).
//
// The window is sliding and measured in event time. For counting, it ends at
// the newest event seen for the key (this one or an earlier-arrived later
// one): an entry counts when newest-Window < entry time; an event older than
// that is ignored. A follow-up at t counts the entries with t-Window < entry
// time <= t. Counting events add an entry (an event id
// already in the state is not counted twice; with distinct, a value already
// present only moves to the newer time). Without Then, the event that brings
// the count to Count fires and the state resets. With Then, counting only
// arms; a follow-up event at t fires when the count at t is at least Count,
// and the state resets. After a reset counting starts again from zero.
func (st *ThresholdState) Apply(o Observation) (fire bool, count int, changed bool) {
	if o.EventID != "" && o.EventID == st.FiredBy {
		return true, o.Count, false
	}
	t := o.Time.UnixNano()
	// The window ends at the newest event seen, so that events from several
	// feeds or processes arriving slightly out of order count the same.
	hi := t
	for _, e := range st.Entries {
		hi = max(hi, e.T)
	}
	lo := hi - int64(o.Window)
	// prune what can never count again
	kept := st.Entries[:0]
	for _, e := range st.Entries {
		if e.T > lo {
			kept = append(kept, e)
		} else {
			changed = true
		}
	}
	st.Entries = kept
	if o.FollowUp {
		count = st.countAt(t, t-int64(o.Window))
		if count >= o.Count {
			st.Entries, st.FiredBy = nil, o.EventID
			return true, count, true
		}
		return false, count, changed
	}
	for _, e := range st.Entries {
		if o.EventID != "" && e.ID == o.EventID {
			return false, st.countAt(hi, lo), changed
		}
	}
	if t <= lo {
		// older than the window: nothing to count
		return false, st.countAt(hi, lo), changed
	}
	added := false
	if o.Distinct {
		for i := range st.Entries {
			if st.Entries[i].V == o.Value {
				if st.Entries[i].T < t {
					st.Entries[i].T, st.Entries[i].ID = t, o.EventID
				}
				added = true
				break
			}
		}
	}
	if !added {
		st.Entries = append(st.Entries, ThresholdEntry{T: t, V: o.Value, ID: o.EventID})
	}
	changed = true
	// Keep the newest Count entries: enough to decide, and bounded.
	if len(st.Entries) > o.Count && o.Count > 0 {
		sort.SliceStable(st.Entries, func(i, j int) bool { return st.Entries[i].T < st.Entries[j].T })
		st.Entries = append(st.Entries[:0], st.Entries[len(st.Entries)-o.Count:]...)
	}
	if t > lo {
		count = st.countAt(hi, lo)
	}
	if !o.Then && count >= o.Count {
		st.Entries, st.FiredBy = nil, o.EventID
		return true, count, true
	}
	return false, count, changed
}

func (st *ThresholdState) countAt(t, lo int64) int {
	n := 0
	for _, e := range st.Entries {
		if e.T > lo && e.T <= t {
			n++
		}
	}
	return n // with distinct, entries are one per value
}

// MemCounter is an in-memory Counter for `playbook test` and tests. It is safe
// for concurrent use. Its memory stays bounded by the keys active within
// their windows: every memSweepEvery observations, the state of keys whose
// newest entry is older than two windows before the newest event time seen
// is dropped (a later event of the key would prune those entries anyway; the
// second window leaves room for records that arrive late), so that a long run
// over many distinct users or addresses does not grow.
type MemCounter struct {
	mu     sync.Mutex
	state  map[string]*memState
	newest int64 // the newest event time observed, unix nanoseconds
	ops    int
}

type memState struct {
	st     ThresholdState
	window time.Duration
}

// memSweepEvery is how many observations pass between sweeps of expired keys.
const memSweepEvery = 4096

// NewMemCounter returns an empty MemCounter.
func NewMemCounter() *MemCounter { return &MemCounter{state: map[string]*memState{}} }

// Observe applies o.
func (m *MemCounter) Observe(_ context.Context, o Observation) (Fired, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := o.Playbook + "\x00" + o.Key
	ms := m.state[k]
	if ms == nil {
		ms = &memState{}
		m.state[k] = ms
	}
	ms.window = o.Window
	fire, n, _ := ms.st.Apply(o)
	if len(ms.st.Entries) == 0 && !fire {
		delete(m.state, k)
	}
	if t := o.Time.UnixNano(); t > m.newest {
		m.newest = t
	}
	if m.ops++; m.ops%memSweepEvery == 0 {
		m.sweep()
	}
	return Fired{Fired: fire, Count: n}, nil
}

// sweep drops the state of keys with no entry inside their window.
func (m *MemCounter) sweep() {
	for k, ms := range m.state {
		live := false
		for _, e := range ms.st.Entries {
			if e.T >= m.newest-2*int64(ms.window) {
				live = true
				break
			}
		}
		if !live {
			delete(m.state, k)
		}
	}
}

// Keys is how many keys hold state.
func (m *MemCounter) Keys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.state)
}

// observation builds the observation of a threshold playbook's count or
// follow-up unit for this event; ok is false when the event has no key (a by
// field is absent) or, with distinct, no value.
func (p *Playbook) observation(c *evalCtx, followUp bool) (Observation, bool) {
	th := p.Trigger.Threshold
	o := Observation{
		// A later version of a record (a sign-in completed with its MFA
		// details) counts as the record it revises.
		Playbook: p.Name, EventID: event.RecordID(c.env.ID), Time: c.env.Time, FollowUp: followUp,
		Count: th.Count, Distinct: th.distinct != nil, Window: th.Window, Then: th.Then != nil,
	}
	var parts []string
	for _, r := range th.by {
		v, ok := c.resolve(r, nil)
		s, isScalar := scalarString(v)
		if !ok || !isScalar || s == "" {
			return o, false
		}
		parts = append(parts, strings.ToLower(s))
	}
	o.Key = strings.Join(parts, "/")
	if th.distinct != nil && !followUp {
		v, ok := c.resolve(*th.distinct, nil)
		s, isScalar := scalarString(v)
		if !ok || !isScalar || s == "" {
			return o, false
		}
		o.Value = strings.ToLower(s)
	}
	return o, true
}

// threshold compiles trigger.threshold.
func (l *loader) threshold(n *yaml.Node, src event.Source) *Threshold {
	f, ok := l.fields(n, "trigger.threshold", "count", "distinct", "by", "window", "then")
	if !ok {
		return nil
	}
	th := &Threshold{}
	good := true
	if v, ok := f["count"]; !ok {
		l.errf(n, "trigger.threshold.count is required")
		good = false
	} else if x, ok := l.number(v, "trigger.threshold.count"); ok {
		if x < 1 || x > maxThresholdCount || x != float64(int(x)) {
			l.errf(v, "trigger.threshold.count must be a whole number from 1 to %d", maxThresholdCount)
			good = false
		}
		th.Count = int(x)
	} else {
		good = false
	}
	if v, ok := f["window"]; !ok {
		l.errf(n, "trigger.threshold.window is required")
		good = false
	} else if d, ok := l.duration(v, "trigger.threshold.window"); ok {
		th.Window = d
	} else {
		good = false
	}
	if v, ok := f["by"]; !ok {
		l.errf(n, "trigger.threshold.by is required (e.g. user, ip, or a list of fields)")
		good = false
	} else if list, ok := l.strList(v, "trigger.threshold.by"); ok {
		for _, s := range list {
			r, err := parseRef(s, false)
			if err != nil {
				l.errf(v, "trigger.threshold.by: %v", err)
				good = false
				continue
			}
			th.By = append(th.By, s)
			th.by = append(th.by, r)
		}
	} else {
		good = false
	}
	if v, ok := f["distinct"]; ok {
		if s, ok := l.str(v, "trigger.threshold.distinct"); ok {
			r, err := parseRef(s, false)
			if err != nil {
				l.errf(v, "trigger.threshold.distinct: %v", err)
				good = false
			} else {
				th.Distinct, th.distinct = s, &r
			}
		} else {
			good = false
		}
	}
	if v, ok := f["then"]; ok {
		tf, ok := l.fields(v, "trigger.threshold.then", "source", "kind", "when")
		if !ok {
			return nil
		}
		fu := &FollowUp{Source: src}
		if sv, ok := tf["source"]; ok {
			if s, ok := l.str(sv, "then.source"); ok {
				fu.Source = event.Source(s)
				if !fu.Source.Valid() {
					l.errf(sv, "then.source %q is not audit, signin, risk_detection, risky_user or alert", s)
					good = false
				}
			}
		}
		if fu.Source == "" {
			l.errf(v, "trigger.threshold.then.source is required when the trigger has no single source")
			good = false
		}
		if kv, ok := tf["kind"]; ok {
			fu.Kinds, _ = l.strList(kv, "then.kind")
		}
		if wv, ok := tf["when"]; ok {
			fu.Conditions = l.condList(wv, "then.when", false, 0)
		}
		if len(tf) == 0 {
			l.errf(v, "trigger.threshold.then needs kind or when: the follow-up event")
			good = false
		}
		th.Then = fu
	}
	if !good {
		return nil
	}
	return th
}

// errNoCounter: MatchStateful was called without a Counter for a set with thresholds.
var errNoCounter = errors.New("playbook: a set with threshold triggers needs a Counter")
