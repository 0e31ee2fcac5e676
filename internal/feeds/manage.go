package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/run"
)

// Management Activity API limits.
const (
	maxWindow    = 24 * time.Hour     // startTime..endTime
	maxRetention = 7 * 24 * time.Hour // startTime no older than this, content expiry
)

// ManagementConfig wires the Office 365 Management Activity API poller.
type ManagementConfig struct {
	Tenant string // tenant GUID (URL path and event tenant)
	// HTTP carries the Management API token: m365.BearerClient(creds, cred,
	// creds.ManageScope()).
	HTTP *http.Client
	// BaseURL ends in /api/v1.0 (default m365.DefaultManageURL); override it for
	// GCC (https://manage-gcc.office.com/api/v1.0), GCC High, DoD or the emulator.
	BaseURL string
	// PublisherID is sent as PublisherIdentifier on every call (default Tenant):
	// it selects the publisher's own throttling quota.
	PublisherID string
	// ContentTypes to subscribe to and poll (default ContentTypes, all five).
	ContentTypes []string
	JS           jetstream.Publisher
	KV           jetstream.KeyValue
	Interval     time.Duration // between polls of a content type (default 1m)
	// Overlap re-lists this much before the cursor for content listed late
	// (default 10m); content already finished is skipped by id.
	Overlap time.Duration
	// Lookback is where a content type with no checkpoint starts (default 24h,
	// at most 7 days).
	Lookback time.Duration
	// EdgeMargin keeps startTime this far inside Microsoft's 7-day limit
	// (default 10m).
	EdgeMargin time.Duration
	// RequestsPerMinute is the tenant's budget (default 2,000); Budget, when set,
	// replaces it (share one between pollers of the same tenant).
	RequestsPerMinute int
	Budget            *TenantBudget
	Concurrency       int // content blobs fetched at once, all content types together (default 4)
	MaxInFlight       int // unacknowledged publishes per blob (default 512)
	CheckpointEvery   int // records between mid-blob checkpoints (default 1000)
	MaxAttempts       int // per request, throttles and 5xx included (default 6)
	RetryBase         time.Duration
	RetryMax          time.Duration
	Logger            *slog.Logger
	Now               func() time.Time
	Observer          Observer
	// OnPublished is told about each newly stored event (timeline).
	OnPublished func(event.Envelope)
	// Audit, when set, records each window of possible loss (managesubs.go).
	Audit GapRecorder
	// SettleAttempts bounds the listings retried, with backoff between
	// RetryBase and RetryMax, while a subscription just started still answers
	// AF20023 (default 30: about 25 minutes with the default backoff).
	SettleAttempts int
	// AfterRecord, when set, is called after each record is handed to the
	// publisher (n records of the blob so far); tests use it to stop the poller
	// mid-blob.
	AfterRecord func(contentType, contentID string, n int)
}

func (c ManagementConfig) withDefaults() ManagementConfig {
	if c.BaseURL == "" {
		c.BaseURL = m365.DefaultManageURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.PublisherID == "" {
		c.PublisherID = c.Tenant
	}
	if len(c.ContentTypes) == 0 {
		c.ContentTypes = ContentTypes
	}
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.Overlap <= 0 {
		c.Overlap = 10 * time.Minute
	}
	if c.Lookback <= 0 {
		c.Lookback = 24 * time.Hour
	}
	if c.EdgeMargin <= 0 {
		c.EdgeMargin = 10 * time.Minute
	}
	if c.Lookback > maxRetention-c.EdgeMargin {
		c.Lookback = maxRetention - c.EdgeMargin
	}
	if c.RequestsPerMinute <= 0 {
		c.RequestsPerMinute = 2000
	}
	if c.Budget == nil {
		c.Budget = NewTenantBudget(c.RequestsPerMinute, time.Minute)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 512
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = 1000
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 6
	}
	if c.SettleAttempts <= 0 {
		c.SettleAttempts = 30
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

var errConnection = errors.New("feeds: management API connection failed")

// ManagementPoller polls the Management Activity API for its content types and
// publishes every audit record to EVENTS, exactly once across crashes (see
// doc.go).
type ManagementPoller struct {
	cfg    ManagementConfig
	client *manageClient
	log    *slog.Logger
	sem    chan struct{} // blob fetch slots
	types  []*ctState

	subsMu sync.Mutex
	subs   map[string]string // content type (lower case) -> status, listed once
}

// NewManagementPoller applies defaults; it starts nothing.
func NewManagementPoller(cfg ManagementConfig) *ManagementPoller {
	cfg = cfg.withDefaults()
	p := &ManagementPoller{cfg: cfg, log: cfg.Logger.With("feed", FeedManagementActivity), sem: make(chan struct{}, cfg.Concurrency)}
	p.client = &manageClient{
		hc: cfg.HTTP, root: cfg.BaseURL + "/" + cfg.Tenant + "/activity/feed", publisher: cfg.PublisherID,
		budget: cfg.Budget, attempts: cfg.MaxAttempts, base: cfg.RetryBase, max: cfg.RetryMax,
		onRetry: func(ae *APIError) {
			if ae != nil && ae.Throttled() {
				cfg.Observer.Throttled(FeedManagementActivity, "")
				return
			}
			if ae == nil {
				cfg.Observer.Failed(FeedManagementActivity, "", errConnection)
				return
			}
			cfg.Observer.Failed(FeedManagementActivity, "", ae)
		},
	}
	for _, ct := range cfg.ContentTypes {
		p.types = append(p.types, p.newCT(ct, NewCheckpoint(cfg.KV, FeedManagementActivity, ct), true))
	}
	return p
}

func (p *ManagementPoller) newCT(ct string, cp *Checkpoint, live bool) *ctState {
	return &ctState{p: p, ct: ct, cp: cp, live: live, status: newStatusWriter(p.cfg.KV, FeedManagementActivity, ct, p.cfg.Now),
		log: p.log.With("content_type", ct)}
}

// Run subscribes and polls every content type until ctx ends. A failed poll is
// logged, recorded in the status and retried at the next interval; Run returns
// nil when ctx ends.
func (p *ManagementPoller) Run(ctx context.Context) error {
	var g run.Group
	for _, st := range p.types {
		g.Add(st.ct, func(ctx context.Context) error { st.loop(ctx); return nil })
	}
	return g.Run(ctx)
}

// PollOnce subscribes if needed and brings every content type up to now once,
// returning the first error (each content type is still polled).
func (p *ManagementPoller) PollOnce(ctx context.Context) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, st := range p.types {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.pollOnce(ctx); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// mgmtCursor is the checkpoint of one content type.
type mgmtCursor struct {
	// Start: every content created before it is stored (listing resumes at
	// Start − Overlap).
	Start time.Time `json:"start"`
	// Origin: where this cursor began; content created before it was never read
	// by this cursor (Backfill reads it).
	Origin time.Time `json:"origin"`
	// Until bounds a backfill cursor (zero for the live poller).
	Until time.Time `json:"until,omitzero"`
	// Done holds the content finished at or after Start − Overlap: id → created.
	Done map[string]time.Time `json:"done,omitempty"`
	// Partial holds blobs in progress: id → records already stored.
	Partial map[string]int `json:"partial,omitempty"`
}

// ctState is one content type's poller.
type ctState struct {
	p      *ManagementPoller
	ct     string
	cp     *Checkpoint
	live   bool // subscribe, keep the status record
	status *statusWriter
	log    *slog.Logger

	subscribed bool
	startAfter time.Time // Microsoft asked us not to start before this
	// waitLoaded: startAfter was read from the state bucket (a wait told to
	// an earlier process holds for this one too).
	waitLoaded bool

	mu     sync.Mutex // guards cur, pending
	cur    mgmtCursor
	loaded bool
	saveMu sync.Mutex // orders checkpoint writes
	// pending counts listed content not yet finished, for the status.
	pending int
	// saveReq asks the checkpoint writer of the running window for a write;
	// nil outside window (set and cleared by window alone).
	saveReq chan struct{}
}

func (st *ctState) loop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := st.pollOnce(ctx); err != nil && ctx.Err() == nil {
			st.log.Error("management activity poll failed", "err", err)
		}
		t.Reset(st.p.cfg.Interval)
	}
}

func (st *ctState) pollOnce(ctx context.Context) error {
	err := st.poll(ctx)
	if err != nil && ctx.Err() == nil {
		st.p.cfg.Observer.Failed(FeedManagementActivity, st.ct, err)
		if st.live {
			st.status.fail(err)
			_ = st.status.flush(ctx, true)
		}
	}
	return err
}

// poll brings the content type from its checkpoint up to now (or Until).
func (st *ctState) poll(ctx context.Context) error {
	cfg := st.p.cfg
	if st.live {
		st.status.load(ctx)
	}
	now := cfg.Now().UTC()
	if err := st.loadCursor(ctx, now); err != nil {
		return err
	}
	if st.live && !st.subscribed {
		if err := st.ensureSubscribed(ctx); err != nil {
			return err
		}
	}
	floor := now.Add(-maxRetention + cfg.EdgeMargin).Truncate(time.Second).Add(time.Second)
	st.mu.Lock()
	cur := st.cur
	st.mu.Unlock()
	end := now.Truncate(time.Second)
	if !cur.Until.IsZero() && cur.Until.Before(end) {
		end = cur.Until
	}
	from := cur.Start.Add(-cfg.Overlap).Truncate(time.Second)
	if !cur.Until.IsZero() && from.Before(cur.Origin) {
		from = cur.Origin // a backfill reads only its own range
	}
	if cur.Start.Before(floor) {
		st.log.Warn("checkpoint is older than Microsoft keeps content; content created before the 7-day limit is lost",
			"checkpoint", cur.Start, "resuming_at", floor)
	}
	if from.Before(floor) {
		from = floor
	}
	for from.Before(end) {
		to := minTime(from.Add(maxWindow), end)
		if err := st.window(ctx, from, to); err != nil {
			return err
		}
		from = to
	}
	st.mu.Lock()
	if st.cur.Start.Before(end) {
		st.cur.Start = end
	}
	start := st.cur.Start
	st.mu.Unlock()
	if err := st.save(ctx); err != nil {
		return err
	}
	lag := cfg.Now().Sub(start)
	cfg.Observer.Lag(FeedManagementActivity, st.ct, lag)
	if st.live {
		st.status.update(func(s *StatusLine) {
			s.Cursor, s.LastSuccess, s.LastError, s.LastErrorAt, s.Pending = start, cfg.Now().UTC(), "", time.Time{}, 0
		})
		if err := st.status.flush(ctx, true); err != nil {
			st.log.Warn("status not written", "err", err)
		}
	}
	return nil
}

func (st *ctState) loadCursor(ctx context.Context, now time.Time) error {
	st.mu.Lock()
	loaded := st.loaded
	st.mu.Unlock()
	if loaded {
		return nil
	}
	var cur mgmtCursor
	found, err := st.cp.Load(ctx, &cur)
	if err != nil {
		return err
	}
	if !found {
		cur.Start = now.Add(-st.p.cfg.Lookback).Truncate(time.Second)
		cur.Origin = cur.Start.Add(-st.p.cfg.Overlap) // the first listing reaches back this far
	}
	if cur.Done == nil {
		cur.Done = map[string]time.Time{}
	}
	if cur.Partial == nil {
		cur.Partial = map[string]int{}
	}
	st.mu.Lock()
	st.cur, st.loaded = cur, true
	st.mu.Unlock()
	if !found {
		return st.save(ctx)
	}
	return nil
}

// save writes the cursor; writes are serialised so that an older state never
// overwrites a newer one.
func (st *ctState) save(ctx context.Context) error {
	st.saveMu.Lock()
	defer st.saveMu.Unlock()
	st.mu.Lock()
	data, err := json.Marshal(st.cur)
	st.mu.Unlock()
	if err != nil {
		return fmt.Errorf("feeds: encode checkpoint: %w", err)
	}
	if _, err := st.cp.kv.Put(ctx, st.cp.key, data); err != nil {
		return fmt.Errorf("feeds: save checkpoint %s: %w", st.cp.key, err)
	}
	return nil
}

// saveSoon has the checkpoint written without waiting: the window's writer
// writes the state current when it gets to it (requests made meanwhile are
// one write), so publishing does not stall on a KV round trip. Outside a
// window it writes now.
func (st *ctState) saveSoon(ctx context.Context) error {
	if st.saveReq == nil {
		return st.save(ctx)
	}
	select {
	case st.saveReq <- struct{}{}:
	default: // a write is already pending; it will include this state
	}
	return nil
}

// listWindow lists [from, to), starting the subscription again after "no
// subscription" or "disabled", and retrying a listing cut off mid-body.
func (st *ctState) listWindow(ctx context.Context, from, to time.Time) ([]content, error) {
	cfg := st.p.cfg
	onPage := func() { cfg.Observer.Fetched(FeedManagementActivity, st.ct, "page") }
	var last error
	settles := 0
	for attempt := 1; attempt <= cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleepCtx(ctx, backoff(attempt-1, cfg.RetryBase, cfg.RetryMax, 0)); err != nil {
				return nil, fmt.Errorf("list %s: %w (after %w)", st.ct, err, last)
			}
		}
		items, err := st.p.client.list(ctx, st.ct, from, to, onPage)
		for err != nil && ctx.Err() == nil && settles < cfg.SettleAttempts && st.settling(ctx, err) {
			// Just started: the subscription settles; not a stop.
			settles++
			if serr := sleepCtx(ctx, backoff(settles, cfg.RetryBase, cfg.RetryMax, 0)); serr != nil {
				return nil, fmt.Errorf("list %s: %w (after %w)", st.ct, serr, err)
			}
			items, err = st.p.client.list(ctx, st.ct, from, to, onPage)
		}
		if settles > 0 && err == nil {
			st.log.Info("the subscription answered after settling", "retries", settles)
		}
		if err == nil {
			return items, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		last = err
		ae := apiErrorOf(err)
		switch {
		case ae != nil && ae.NoSubscription() && settles >= cfg.SettleAttempts:
			return nil, fmt.Errorf("list %s: the subscription is enabled but still answers %s after %d listings: %w", st.ct, ae.Code, settles, err)
		case ae != nil && ae.NoSubscription():
			st.log.Warn("subscription missing or disabled; starting it again", "code", ae.Code)
			if serr := st.subscribe(ctx, "the subscription was found "+map[bool]string{true: "missing", false: "disabled"}[ae.Code == "AF20022"]); serr != nil {
				return nil, fmt.Errorf("%w; and %w", err, serr)
			}
		case ae != nil && ae.Window():
			// Our clock and Microsoft's disagree about the 7-day edge or the
			// window: step inside it and try again.
			st.log.Warn("listing window refused; moving inside the limits", "code", ae.Code, "from", from, "to", to)
			from = from.Add(cfg.EdgeMargin)
			if !from.Before(to) {
				return nil, nil
			}
		case ae != nil && !ae.Transient():
			return nil, err
		}
	}
	return nil, fmt.Errorf("list %s: giving up after %d attempts: %w", st.ct, cfg.MaxAttempts, last)
}

// window stores every record of the content created in [from, to).
func (st *ctState) window(ctx context.Context, from, to time.Time) error {
	cfg := st.p.cfg
	items, err := st.listWindow(ctx, from, to)
	if err != nil {
		return err
	}
	slices.SortStableFunc(items, func(a, b content) int {
		if c := a.ContentCreated.Compare(b.ContentCreated); c != 0 {
			return c
		}
		return strings.Compare(a.ContentID, b.ContentID)
	})
	items = slices.CompactFunc(items, func(a, b content) bool { return a.ContentID == b.ContentID })
	done := make([]bool, len(items))
	st.mu.Lock()
	open := 0
	for i, c := range items {
		if _, ok := st.cur.Done[c.ContentID]; ok {
			done[i] = true
		} else {
			open++
		}
	}
	st.pending = open
	st.mu.Unlock()
	if st.live {
		st.status.update(func(s *StatusLine) { s.Pending = open })
		_ = st.status.flush(ctx, false)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel()
	}
	first := 0 // index of the first unfinished item, for advancing Start
	finish := func(i int) {
		st.mu.Lock()
		done[i] = true
		c := items[i]
		st.cur.Done[c.ContentID] = c.ContentCreated
		delete(st.cur.Partial, c.ContentID)
		st.pending--
		for first < len(items) && done[first] {
			first++
		}
		if first < len(items) {
			if s := items[first].ContentCreated.Truncate(time.Second); s.After(st.cur.Start) {
				st.cur.Start = s
				st.pruneDoneLocked(cfg.Overlap)
			}
		}
		st.mu.Unlock()
	}
	// The checkpoint writer: it uses ctx, not wctx, so that what a failed
	// window stored is still recorded.
	st.saveReq = make(chan struct{}, 1)
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		for range st.saveReq {
			if err := st.save(ctx); err != nil {
				fail(err)
			}
		}
	}()
	for i, c := range items {
		if done[i] {
			continue
		}
		select {
		case <-wctx.Done():
		case st.p.sem <- struct{}{}:
			if wctx.Err() != nil {
				<-st.p.sem
			}
		}
		if wctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-st.p.sem }()
			if err := st.blob(wctx, c); err != nil {
				fail(fmt.Errorf("content %s: %w", c.ContentID, err))
				return
			}
			finish(i)
			_ = st.saveSoon(wctx)
			if st.live {
				st.status.update(func(s *StatusLine) { s.Pending = st.pendingNow() })
				if err := st.status.flush(wctx, false); err != nil {
					st.log.Warn("status not written", "err", err)
				}
			}
		}()
	}
	wg.Wait()
	close(st.saveReq) // no blob is left to ask; the writer writes what is pending
	<-saverDone
	st.saveReq = nil
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The whole window is stored: move Start to its end and forget finished
	// content that the next listing (from Start − Overlap) cannot return.
	st.mu.Lock()
	if to.After(st.cur.Start) {
		st.cur.Start = to
	}
	st.pruneDoneLocked(cfg.Overlap)
	st.mu.Unlock()
	return st.save(ctx)
}

// pruneDoneLocked forgets finished content that a listing from Start − overlap
// cannot return, so that the checkpoint stays small however many blobs a
// window holds.
func (st *ctState) pruneDoneLocked(overlap time.Duration) {
	horizon := st.cur.Start.Add(-overlap - time.Second)
	for id, created := range st.cur.Done {
		if created.Before(horizon) {
			delete(st.cur.Done, id)
		}
	}
}

func (st *ctState) pendingNow() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pending
}

func (st *ctState) setPartial(id string, n int) {
	st.mu.Lock()
	st.cur.Partial[id] = n
	st.mu.Unlock()
}

// blob streams one content blob and publishes its records, resuming after the
// records a checkpoint says are stored.
func (st *ctState) blob(ctx context.Context, c content) error {
	cfg := st.p.cfg
	st.mu.Lock()
	skip := st.cur.Partial[c.ContentID]
	st.mu.Unlock()
	var last error
	for attempt := 1; attempt <= cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleepCtx(ctx, backoff(attempt-1, cfg.RetryBase, cfg.RetryMax, 0)); err != nil {
				return fmt.Errorf("%w (after %w)", err, last)
			}
		}
		stored, err := st.streamBlob(ctx, c, skip)
		if stored > skip {
			skip = stored
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		last = err
		if ae := apiErrorOf(err); ae != nil {
			// do has already retried throttles and 5xx; only a 404 (content
			// listed before it is readable) and mid-body failures retry here.
			if ae.Expired() || (ae.Status == http.StatusNotFound && !c.ContentExpiration.IsZero() && cfg.Now().After(c.ContentExpiration)) {
				st.log.Error("content expired before it could be read; its records are lost", "content_id", c.ContentID, "created", c.ContentCreated, "err", err)
				cfg.Observer.Failed(FeedManagementActivity, st.ct, err)
				if st.live {
					st.status.fail(err)
				}
				return nil
			}
			if ae.Status != http.StatusNotFound {
				return err
			}
		}
	}
	return fmt.Errorf("giving up after %d attempts: %w", cfg.MaxAttempts, last)
}

// streamBlob decodes the blob as a stream (memory does not grow with its size)
// and returns how many of its records are stored.
func (st *ctState) streamBlob(ctx context.Context, c content, skip int) (stored int, err error) {
	cfg := st.p.cfg
	stored = skip
	resp, err := st.p.client.do(ctx, "get blob", http.MethodGet, c.ContentURI)
	if err != nil {
		return stored, err
	}
	defer resp.Body.Close()
	cfg.Observer.Fetched(FeedManagementActivity, st.ct, "blob")

	saved := skip
	newEvents := 0
	pl := newPipeline(cfg.JS, cfg.MaxInFlight, cfg.OnPublished != nil, func(tag int, isNew bool, env *event.Envelope) {
		stored = tag + 1
		if isNew {
			newEvents++
			if cfg.OnPublished != nil {
				cfg.OnPublished(*env)
			}
		}
	})
	account := func() {
		if newEvents > 0 {
			cfg.Observer.Published(FeedManagementActivity, st.ct, newEvents)
			if st.live {
				st.status.addEvents(newEvents)
			}
			newEvents = 0
		}
	}
	defer account()
	checkpoint := func() error {
		if stored == saved {
			return nil
		}
		st.setPartial(c.ContentID, stored)
		if err := st.saveSoon(ctx); err != nil {
			return err
		}
		saved = stored
		account()
		return nil
	}
	// On a failure after some records, keep what is stored (unless the process
	// is going away: then the last checkpoint stands, as after a crash).
	fail := func(err error) (int, error) {
		if ctx.Err() == nil && pl.drain(ctx) == nil {
			_ = checkpoint()
		}
		return stored, err
	}

	ar := newArrayReader(resp.Body)
	n := 0
	for {
		raw, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("read blob record %d: %w", n, err))
		}
		if n < skip {
			n++
			continue
		}
		env, err := event.NormalizeAs(event.SourceAudit, cfg.Tenant, raw)
		if err != nil {
			st.log.Warn("skipping an audit record that does not normalise", "content_id", c.ContentID, "index", n, "err", err)
			cfg.Observer.Failed(FeedManagementActivity, st.ct, err)
			pl.skip(n)
		} else if err := pl.add(ctx, env, n); err != nil {
			return fail(err)
		}
		n++
		if cfg.AfterRecord != nil {
			cfg.AfterRecord(st.ct, c.ContentID, n)
		}
		if stored-saved >= cfg.CheckpointEvery {
			if err := checkpoint(); err != nil {
				return fail(err)
			}
		}
	}
	if err := pl.drain(ctx); err != nil {
		return stored, err
	}
	return stored, nil
}
