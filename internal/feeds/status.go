package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// StatusLine is the state of one feed (and content type) as its poller last
// wrote it to KV (feed.status.<feed>.<content type>), readable by any process.
type StatusLine struct {
	Feed        string    `json:"feed"`         // management_activity, signins, risk_detections, risky_users
	ContentType string    `json:"content_type"` // Management Activity content type; "" for Graph feeds
	Cursor      time.Time `json:"cursor"`       // everything before this is stored
	LastSuccess time.Time `json:"last_success"` // end of the last complete poll
	LagSeconds  float64   `json:"lag_seconds"`  // now − cursor, when read
	Events      int64     `json:"events"`       // events newly stored since the feed began
	Pending     int       `json:"pending"`      // content blobs listed but not yet finished
	LastError   string    `json:"last_error"`   // "" after a successful poll
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Gaps are the latest windows of possible loss (at most maxGaps): content
	// Microsoft no longer lists, such as what was created while a Management
	// Activity subscription was stopped or before it started.
	Gaps []Gap `json:"gaps,omitempty"`
	// Parked says why the feed does not poll (the tenant lacks the licence
	// its API needs) and since when; it asks again every LicenceRecheck and
	// is unparked by the first answer. Empty when it runs.
	Parked      string    `json:"parked,omitempty"`
	ParkedSince time.Time `json:"parked_since,omitzero"`
}

// Gap is a window of possible loss: records created in [From, To) may never
// have been read.
type Gap struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Reason string    `json:"reason"`
}

const maxGaps = 10

// Status reads every feed's status record from the state bucket, computing the
// lag against now (time.Now when nil). Lines are sorted by feed and content type.
func Status(ctx context.Context, kv jetstream.KeyValue, now func() time.Time) ([]StatusLine, error) {
	if now == nil {
		now = time.Now
	}
	lister, err := kv.ListKeysFiltered(ctx, bus.FeedStatusFilter())
	if err != nil {
		return nil, fmt.Errorf("feeds: list status: %w", err)
	}
	var keys []string
	for k := range lister.Keys() { // closed when every key is listed
		keys = append(keys, k)
	}
	t := now()
	out := make([]StatusLine, 0, len(keys))
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("feeds: read status %s: %w", k, err)
		}
		var s StatusLine
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			return nil, fmt.Errorf("feeds: decode status %s: %w", k, err)
		}
		if !s.Cursor.IsZero() {
			s.LagSeconds = t.Sub(s.Cursor).Seconds()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Feed != out[j].Feed {
			return out[i].Feed < out[j].Feed
		}
		return out[i].ContentType < out[j].ContentType
	})
	return out, nil
}

// WriteStatus prints lines for `responder feeds status`: with asJSON one object
// per line, else a table.
func WriteStatus(w io.Writer, lines []StatusLine, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return fmt.Errorf("feeds: write status: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEED\tCONTENT TYPE\tCURSOR\tLAST SUCCESS\tLAG\tEVENTS\tPENDING\tLAST ERROR")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, l := range lines {
		ct := l.ContentType
		if ct == "" {
			ct = "-"
		}
		lag := time.Duration(l.LagSeconds * float64(time.Second)).Round(time.Second)
		errText := strings.ReplaceAll(l.LastError, "\n", " ")
		if errText == "" {
			errText = "-"
		}
		if l.Parked != "" {
			errText = "PARKED since " + ts(l.ParkedSince) + ": " + strings.ReplaceAll(l.Parked, "\n", " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", l.Feed, ct, ts(l.Cursor), ts(l.LastSuccess), lag, l.Events, l.Pending, errText)
		for _, g := range l.Gaps {
			fmt.Fprintf(tw, "  possible loss\t%s\t%s\tto %s\t\t\t\t%s\n", ct, ts(g.From), ts(g.To), strings.ReplaceAll(g.Reason, "\n", " "))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("feeds: write status: %w", err)
	}
	return nil
}

// statusWriter keeps one status record and writes it to KV, at most every
// minGap unless forced.
type statusWriter struct {
	kv     jetstream.KeyValue
	key    string
	minGap time.Duration
	now    func() time.Time

	mu      sync.Mutex
	s       StatusLine
	loaded  bool
	written time.Time
}

func newStatusWriter(kv jetstream.KeyValue, feed, ct string, now func() time.Time) *statusWriter {
	return &statusWriter{kv: kv, key: bus.FeedStatusKey(feed, ct), minGap: 2 * time.Second, now: now,
		s: StatusLine{Feed: feed, ContentType: ct}}
}

// load continues the event count and the gaps of an earlier process.
func (w *statusWriter) load(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded {
		return
	}
	e, err := w.kv.Get(ctx, w.key)
	if err != nil {
		return
	}
	var s StatusLine
	if json.Unmarshal(e.Value(), &s) == nil {
		w.s.Events, w.s.LastSuccess, w.s.Cursor = s.Events, s.LastSuccess, s.Cursor
		w.s.Parked, w.s.ParkedSince = s.Parked, s.ParkedSince
		w.s.Gaps = append(s.Gaps, w.s.Gaps...)
	}
	w.loaded = true
}

func (w *statusWriter) update(fn func(*StatusLine)) {
	w.mu.Lock()
	fn(&w.s)
	w.mu.Unlock()
}

func (w *statusWriter) addEvents(n int) {
	w.mu.Lock()
	w.s.Events += int64(n)
	w.mu.Unlock()
}

func (w *statusWriter) fail(err error) {
	w.mu.Lock()
	w.s.LastError = err.Error()
	w.s.LastErrorAt = w.now().UTC()
	w.mu.Unlock()
}

// flush writes the record if forced or minGap has passed. Errors are returned
// for logging; status is best effort.
func (w *statusWriter) flush(ctx context.Context, force bool) error {
	w.mu.Lock()
	now := w.now()
	if !force && now.Sub(w.written) < w.minGap {
		w.mu.Unlock()
		return nil
	}
	w.written = now
	s := w.s
	w.mu.Unlock()
	s.UpdatedAt = now.UTC()
	s.LagSeconds = 0
	if !s.Cursor.IsZero() {
		s.LagSeconds = now.Sub(s.Cursor).Seconds()
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("feeds: encode status: %w", err)
	}
	if _, err := w.kv.Put(ctx, w.key, data); err != nil {
		return fmt.Errorf("feeds: write status %s: %w", w.key, err)
	}
	return nil
}
