package feeds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// coverage is the low end of what has been read for a content type, by the
// live poller and finished backfills together (feed.coverage.<feed>.<ct>).
type coverage struct {
	From time.Time `json:"from"`
}

// Backfill re-reads the Management Activity content created in the last
// `since` (at most 7 days, less the edge margin) that the live poller never
// read, for every configured content type, without duplicating events: content
// at or after the feed's coverage (where the live cursor began, or an earlier
// backfill reached) is not read again. It is crash-safe and resumable like the
// live poller (its own checkpoint, feed.backfill.management_activity.<ct>), and
// may run while a live poller runs in another process. Progress goes to
// progress (a terminal gets one updating line per content type; nil: none).
func Backfill(ctx context.Context, cfg ManagementConfig, since time.Duration, progress io.Writer) error {
	cfg = cfg.withDefaults()
	if since <= 0 {
		return errors.New("feeds: backfill needs a positive --since")
	}
	if limit := maxRetention - cfg.EdgeMargin; since > limit {
		return fmt.Errorf("feeds: backfill --since %s is beyond the 7 days Microsoft keeps content (at most %s)", since, limit)
	}
	if progress == nil {
		progress = io.Discard
	}
	pw := newProgress(progress, cfg.Now)
	cfg.Observer = multiObserver{cfg.Observer, pw}
	p := NewManagementPoller(cfg)
	now := cfg.Now().UTC()
	lower := now.Add(-since).Truncate(time.Second)
	for _, ct := range cfg.ContentTypes {
		if err := backfillType(ctx, p, ct, lower, now, pw); err != nil {
			return fmt.Errorf("feeds: backfill %s: %w", ct, err)
		}
	}
	return nil
}

func backfillType(ctx context.Context, p *ManagementPoller, ct string, lower, now time.Time, pw *progressWriter) error {
	kv := p.cfg.KV
	liveCP := NewCheckpoint(kv, FeedManagementActivity, ct)
	covCP := NewCheckpoint(kv, "coverage", FeedManagementActivity, ct)
	bfCP := NewCheckpoint(kv, "backfill", FeedManagementActivity, ct)
	var live mgmtCursor
	liveFound, err := liveCP.Load(ctx, &live)
	if err != nil {
		return err
	}
	var cov coverage
	covFound, err := covCP.Load(ctx, &cov)
	if err != nil {
		return err
	}
	until := now.Truncate(time.Second)
	switch {
	case covFound:
		until = cov.From
	case liveFound:
		until = live.Origin
	}
	if !lower.Before(until) {
		pw.line(ct, fmt.Sprintf("%s: nothing to do, already read from %s", ct, until.Format(time.RFC3339)))
		return nil
	}
	var bf mgmtCursor
	bfFound, err := bfCP.Load(ctx, &bf)
	if err != nil {
		return err
	}
	if !bfFound || !bf.Until.Equal(until) || !bf.Origin.Equal(lower) || !bf.Start.Before(bf.Until) {
		bf = mgmtCursor{Start: lower, Origin: lower, Until: until}
		if err := bfCP.Save(ctx, bf); err != nil {
			return err
		}
	}
	st := p.newCT(ct, bfCP, false)
	pw.begin(ct, lower, until)
	if err := st.ensureSubscribed(ctx); err != nil {
		return err
	}
	for {
		if err := st.pollOnce(ctx); err != nil {
			return err
		}
		st.mu.Lock()
		finished := !st.cur.Start.Before(st.cur.Until)
		st.mu.Unlock()
		if finished {
			break
		}
	}
	pw.end(ct)
	if err := covCP.Save(ctx, coverage{From: lower}); err != nil {
		return err
	}
	if !liveFound {
		// Let the live poller start where the backfill ended, not Lookback ago.
		data := fmt.Appendf(nil, `{"start":%q,"origin":%q}`, until.Format(time.RFC3339Nano), lower.Format(time.RFC3339Nano))
		if _, err := kv.Create(ctx, liveCP.key, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("feeds: create live checkpoint: %w", err)
		}
	}
	return nil
}

// multiObserver fans out to several observers.
type multiObserver []Observer

func (m multiObserver) Published(f, ct string, n int) {
	for _, o := range m {
		o.Published(f, ct, n)
	}
}
func (m multiObserver) Fetched(f, ct, w string) {
	for _, o := range m {
		o.Fetched(f, ct, w)
	}
}
func (m multiObserver) Throttled(f, ct string) {
	for _, o := range m {
		o.Throttled(f, ct)
	}
}
func (m multiObserver) Failed(f, ct string, err error) {
	for _, o := range m {
		o.Failed(f, ct, err)
	}
}
func (m multiObserver) Lag(f, ct string, d time.Duration) {
	for _, o := range m {
		o.Lag(f, ct, d)
	}
}

// progressWriter prints backfill progress: on a terminal one line per content
// type rewritten in place, elsewhere a line every few seconds.
type progressWriter struct {
	nopObserver
	w     io.Writer
	tty   bool
	now   func() time.Time
	mu    sync.Mutex
	ct    string
	start time.Time
	last  time.Time
	blobs atomic.Int64
	evs   atomic.Int64
}

func newProgress(w io.Writer, now func() time.Time) *progressWriter {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressWriter{w: w, tty: tty, now: now}
}

func (p *progressWriter) begin(ct string, from, to time.Time) {
	p.mu.Lock()
	p.ct, p.start, p.last = ct, p.now(), time.Time{}
	p.blobs.Store(0)
	p.evs.Store(0)
	p.mu.Unlock()
	fmt.Fprintf(p.w, "%s: reading content created %s .. %s\n", ct, from.Format(time.RFC3339), to.Format(time.RFC3339))
}

func (p *progressWriter) Published(_, _ string, n int) { p.evs.Add(int64(n)); p.tick(false) }
func (p *progressWriter) Fetched(_, _, what string) {
	if what == "blob" {
		p.blobs.Add(1)
	}
	p.tick(false)
}

func (p *progressWriter) tick(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	gap := 5 * time.Second
	if p.tty {
		gap = 200 * time.Millisecond
	}
	if !final && now.Sub(p.last) < gap {
		return
	}
	p.last = now
	msg := fmt.Sprintf("%s: %d blobs, %d new events, %s", p.ct, p.blobs.Load(), p.evs.Load(), now.Sub(p.start).Round(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progressWriter) end(string) { p.tick(true) }

func (p *progressWriter) line(_ string, msg string) { fmt.Fprintln(p.w, msg) }
