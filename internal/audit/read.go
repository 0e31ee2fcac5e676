package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// ErrNotFound is returned by Get when no record has the id, as record id or as
// request id.
var ErrNotFound = errors.New("audit: no such record")

// Filter selects records. Empty fields select everything.
//
// Identifiers (Action, Outcome, Playbook, RequestID, TenantID) match exactly.
// People and objects match without regard to case: Actor matches Actor.Name or
// Actor.Kind, or "kind:name" as the table prints it; Target matches any value of
// Record.Target, or "key=value" for one key. Since is inclusive, Until exclusive,
// both against Record.Time.
type Filter struct {
	Since, Until time.Time
	Actor        string
	Action       string
	Target       string
	Outcome      string
	Playbook     string
	RequestID    string
	TenantID     string
}

// IsZero reports whether f selects every record.
func (f Filter) IsZero() bool {
	return f.Since.IsZero() && f.Until.IsZero() && f.Actor == "" && f.Action == "" &&
		f.Target == "" && f.Outcome == "" && f.Playbook == "" && f.RequestID == "" && f.TenantID == ""
}

// Match reports whether r passes f.
func (f Filter) Match(r Record) bool {
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	case f.Action != "" && r.Action != f.Action:
		return false
	case f.Outcome != "" && string(r.Outcome) != f.Outcome:
		return false
	case f.Playbook != "" && r.Playbook != f.Playbook:
		return false
	case f.RequestID != "" && r.RequestID != f.RequestID:
		return false
	case f.TenantID != "" && r.TenantID != f.TenantID:
		return false
	case f.Actor != "" && !matchActor(f.Actor, r.Actor):
		return false
	case f.Target != "" && !matchTarget(f.Target, r.Target):
		return false
	}
	return true
}

func matchActor(want string, a Actor) bool {
	if strings.EqualFold(want, a.Name) || strings.EqualFold(want, a.Kind) {
		return true
	}
	kind, name, ok := strings.Cut(want, ":")
	return ok && strings.EqualFold(kind, a.Kind) && strings.EqualFold(name, a.Name)
}

func matchTarget(want string, target map[string]string) bool {
	for _, v := range target {
		if strings.EqualFold(want, v) {
			return true
		}
	}
	if k, v, ok := strings.Cut(want, "="); ok {
		got, present := target[k]
		return present && strings.EqualFold(v, got)
	}
	return false
}

// subject is the narrowest stream filter that holds every record f can match:
// the tenant, outcome and action are subject tokens (see bus.AuditSubject), so the
// server does that part of the filtering. Match still decides.
func (f Filter) subject() string {
	if f.Outcome == "" && f.Action == "" {
		if f.TenantID == "" {
			return ""
		}
		return bus.AuditFilter(f.TenantID)
	}
	return bus.AuditSelect(f.TenantID, f.Outcome, f.Action)
}

// List calls fn for every record that f matches, in stream order, and returns once
// it has passed the last record stored when List began: it never waits for new
// records. An error from fn stops List and is returned as is. Messages in the
// stream that are not records are skipped (Verify names them).
func List(ctx context.Context, js jetstream.JetStream, f Filter, fn func(Record) error) error {
	return scan(ctx, js, bus.StreamAudit, f.subject(), func(m storedMsg) error {
		var r Record
		if err := json.Unmarshal(m.data, &r); err != nil {
			return nil
		}
		if !f.Match(r) {
			return nil
		}
		return fn(r)
	})
}

// Get returns the record with this record id or, when no record has it, the latest
// record of the request with this id (its current state). It reads the stream
// from the start: meant for `audit show`, not for hot paths.
func Get(ctx context.Context, js jetstream.JetStream, id string) (Record, error) {
	if id == "" {
		return Record{}, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	var (
		found, latest Record
		haveLatest    bool
	)
	err := scan(ctx, js, bus.StreamAudit, "", func(m storedMsg) error {
		var r Record
		if err := json.Unmarshal(m.data, &r); err != nil {
			return nil
		}
		if r.ID == id {
			found = r
			return errStop
		}
		if r.RequestID == id {
			latest, haveLatest = r, true
		}
		return nil
	})
	switch {
	case errors.Is(err, errStop):
		return found, nil
	case err != nil:
		return Record{}, err
	case haveLatest:
		return latest, nil
	}
	return Record{}, fmt.Errorf("%w: %q is neither a record id nor a request id", ErrNotFound, id)
}

// storedMsg is one message of the stream as read.
type storedMsg struct {
	seq     uint64
	subject string
	data    []byte
}

// errStop ends a scan early without error.
var errStop = errors.New("audit: stop scan")

// scanBatch is how many messages a scan asks the server for at once.
const scanBatch = 256

// scan calls fn for every message of stream (on subject, if not empty) in stream
// order, up to the last message stored when scan began. It reads with an ordered
// consumer, which recovers from lost deliveries by itself, and deletes the
// consumer before returning. fn's error is returned unwrapped.
func scan(ctx context.Context, js jetstream.JetStream, stream, subject string, fn func(storedMsg) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", stream, err)
	}
	end := s.CachedInfo().State.LastSeq
	if s.CachedInfo().State.Msgs == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
	}
	if subject != "" {
		cfg.FilterSubjects = []string{subject}
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", stream, err)
	}
	defer func() {
		it.Stop()
		deleteConsumer(ctx, js, stream, cons)
	}()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil // nothing on this subject
	}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", stream, err)
		}
		seq := md.Sequence.Stream
		if seq > end {
			return nil // stored after the scan began
		}
		if err := fn(storedMsg{seq: seq, subject: msg.Subject(), data: msg.Data()}); err != nil {
			return err
		}
		if seq >= end || md.NumPending == 0 {
			return nil
		}
	}
}

// deleteConsumer removes the scan's ephemeral consumer now rather than after its
// inactivity threshold. Best effort: the server removes it anyway.
func deleteConsumer(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(dctx, stream, info.Name)
}

// decodeStrict decodes one stored record: one JSON object with no unknown field
// and nothing after it.
func decodeStrict(data []byte) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("not an audit record: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, errors.New("not an audit record: data after the record")
	}
	return r, nil
}

// DefaultStaleWait is StreamAtLeast's default bound.
const DefaultStaleWait = 5 * time.Second

// ErrStaleState: the stream's state stayed behind a record known to exist,
// as told by a server that knows no leader for it (a server catching up).
// It passes by itself: it wraps context.DeadlineExceeded, so that callers
// treat it as a transient error and ask again.
var ErrStaleState = fmt.Errorf("%w: the stream's state, as a server without its leader told it, ends before a record known to exist", context.DeadlineExceeded)

// StreamAtLeast returns the stream with its state, read again (every 250 ms,
// up to wait; DefaultStaleWait when 0) while the answer came from a server
// that knows no leader for the stream. A NATS server that has just rejoined
// its cluster answers stream-info requests with its own replica's state as
// long as it finds the stream's group leaderless (nats-server 2.15
// jsStreamInfoRequest; its answer names no leader), and that state can end
// before records the cluster has stored: a listing would stop early, and a
// head check would call the trail cut. An answer that names a leader (or
// comes from a single server) is the stream's, whatever it says: a trail
// really cut is reported. A leaderless answer still behind atLeast (a record
// known to exist: the kept head's) after the wait is ErrStaleState.
func StreamAtLeast(ctx context.Context, js jetstream.JetStream, stream string, atLeast uint64, wait time.Duration, log *slog.Logger) (jetstream.Stream, error) {
	if wait <= 0 {
		wait = DefaultStaleWait
	}
	deadline := time.Now().Add(wait)
	for {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", stream, err)
		}
		info := st.CachedInfo()
		leaderless := info.Cluster != nil && info.Cluster.Leader == ""
		if !leaderless {
			return st, nil
		}
		if !time.Now().Before(deadline) {
			if info.State.LastSeq < atLeast {
				if log != nil {
					log.Warn("the stream's state, from a server that knows no leader for it, stays behind a record known to exist", "stream", stream, "last_seq", info.State.LastSeq, "expected_at_least", atLeast)
				}
				return nil, fmt.Errorf("stream %s: last seq %d, record %d known: %w", stream, info.State.LastSeq, atLeast, ErrStaleState)
			}
			return st, nil
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
