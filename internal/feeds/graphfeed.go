package feeds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/event"
)

// GraphFeedConfig wires one Graph feed poller (sign-ins, risk detections, risky
// users).
type GraphFeedConfig struct {
	Tenant   string
	Graph    *msgraphsdk.GraphServiceClient
	JS       jetstream.Publisher
	KV       jetstream.KeyValue
	Interval time.Duration // between polls (default 1m)
	// Overlap re-reads this much before the cursor for records that arrive late
	// and out of order (default 30m for sign-ins, 20m for risk: Microsoft
	// documents sign-ins a few minutes late and real-time risk detections 5 to
	// 10 minutes late; at most 90m so that the stream's 2 h duplicate window
	// covers every re-read even without the poller's memory).
	Overlap time.Duration
	// Rescan is how far back the periodic re-scan reads, for records published
	// hours late with their original timestamps (default 48h for the Identity
	// Protection feeds: "Offline detections may not show up in reporting for 48
	// hours"; 2h15m for sign-ins, which gain MFA details for up to two hours
	// (signinrev.go); negative turns it off).
	Rescan time.Duration
	// RescanEvery spaces re-scans (default 1h; 15m for sign-ins). A re-scan is one listing of
	// every record updated within Rescan (pages of PageSize), paced by Budget
	// like any poll; records already stored are recognised by id and state and
	// never published again, across restarts (the ids are kept in the state
	// bucket).
	RescanEvery time.Duration
	// Lookback is where a poller with no checkpoint starts (default 24h).
	Lookback time.Duration
	// Window is the widest time range of one query; the checkpoint moves after
	// each (default 6h).
	Window time.Duration
	// Budget is the tenant's request budget for this API: reports (sign-ins)
	// 5 per 10 s; Identity Protection 1 per second shared with Conditional Access
	// actions. Default: a budget of its own with Microsoft's numbers.
	Budget      *TenantBudget
	PageSize    int32 // $top (default 1000 for sign-ins, 500 for risk)
	MaxAttempts int   // per request after throttling (default 5)
	// LicenceRecheck is how often a tenant without the needed licence is asked
	// again (default 1h), so that a licence bought later is picked up without
	// a hot retry loop.
	LicenceRecheck time.Duration
	// Audit, when set, records when the feed is parked for want of a licence
	// and when it resumes (once per parking, across restarts).
	Audit    GapRecorder
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer
	// OnPublished is told about each newly stored event.
	OnPublished func(event.Envelope)
}

// graphFeed describes one Graph collection polled by a timestamp.
type graphFeed struct {
	name    string
	source  event.Source
	path    string // relative to the Graph base URL
	field   string // the timestamp $filter uses
	top     int32
	overlap time.Duration
	rescan  time.Duration
	budget  func() *TenantBudget
	licence string
	// rescanEvery is the default RescanEvery.
	rescanEvery time.Duration
	// revisions names the fields whose change makes a record seen before a
	// new version (signinrev.go); nil: the envelope id alone.
	revisions []string
}

var (
	// The licences, as Microsoft documents them: the sign-in log needs Entra
	// ID P1 or P2 (https://learn.microsoft.com/graph/api/signin-list);
	// "You must have a Microsoft Entra ID P1 or P2 license to use the risk
	// detection API" (https://learn.microsoft.com/graph/api/riskdetection-list);
	// "Using the riskyUsers API requires a Microsoft Entra ID P2 license"
	// (https://learn.microsoft.com/graph/api/riskyuser-list). Without it Graph
	// answers 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant.
	feedSignIns = graphFeed{name: FeedSignIns, source: event.SourceSignIn, path: "auditLogs/signIns", field: "createdDateTime",
		top: 1000, overlap: 30 * time.Minute, budget: NewReportsBudget,
		rescan: 2*time.Hour + 15*time.Minute, rescanEvery: 15 * time.Minute, revisions: signInRevisionFields,
		licence: "tenant has no Entra ID P1 or P2 licence: sign-in log feed parked (auditLogs/signIns needs Microsoft Entra ID P1 or P2)"}
	feedRiskDetections = graphFeed{name: FeedRiskDetections, source: event.SourceRiskDetection, path: "identityProtection/riskDetections",
		field: "lastUpdatedDateTime", top: 500, overlap: 20 * time.Minute, rescan: 48 * time.Hour, budget: NewIdentityProtectionBudget,
		licence: "tenant has no Entra ID P2 licence: Identity Protection feeds parked (riskDetections needs Microsoft Entra ID P2, or P1 for limited information)"}
	feedRiskyUsers = graphFeed{name: FeedRiskyUsers, source: event.SourceRiskyUser, path: "identityProtection/riskyUsers",
		field: "riskLastUpdatedDateTime", top: 500, overlap: 20 * time.Minute, rescan: 48 * time.Hour, budget: NewIdentityProtectionBudget,
		licence: "tenant has no Entra ID P2 licence: Identity Protection feeds parked (riskyUsers needs Microsoft Entra ID P2)"}
)

// GraphPoller polls one Graph collection by a timestamp, oldest window first,
// and publishes each record state once.
type GraphPoller struct {
	cfg    GraphFeedConfig
	feed   graphFeed
	cp     *Checkpoint
	status *statusWriter
	log    *slog.Logger
	// seen holds the envelope ids stored within the overlap (or the re-scan
	// horizon), so that re-reads do not even reach the stream; owned by the Run
	// goroutine and kept in the state bucket when the feed re-scans.
	seen *seenSet
	// noLicence is set once the tenant answered that it lacks the licence.
	noLicence bool
}

// NewSignInPoller polls auditLogs/signIns by createdDateTime.
func NewSignInPoller(cfg GraphFeedConfig) *GraphPoller { return newGraphPoller(cfg, feedSignIns) }

// NewRiskDetectionPoller polls identityProtection/riskDetections by
// lastUpdatedDateTime: a detection whose state changes later is a new event.
func NewRiskDetectionPoller(cfg GraphFeedConfig) *GraphPoller {
	return newGraphPoller(cfg, feedRiskDetections)
}

// NewRiskyUserPoller polls identityProtection/riskyUsers by
// riskLastUpdatedDateTime: a user whose risk rises later is seen again.
func NewRiskyUserPoller(cfg GraphFeedConfig) *GraphPoller { return newGraphPoller(cfg, feedRiskyUsers) }

func newGraphPoller(cfg GraphFeedConfig, f graphFeed) *GraphPoller {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = f.overlap
	}
	cfg.Overlap = min(cfg.Overlap, 90*time.Minute)
	switch {
	case cfg.Rescan == 0:
		cfg.Rescan = f.rescan
	case cfg.Rescan < 0:
		cfg.Rescan = 0
	}
	if cfg.RescanEvery <= 0 {
		cfg.RescanEvery = cmp.Or(f.rescanEvery, time.Hour)
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = 24 * time.Hour
	}
	if cfg.Window <= 0 {
		cfg.Window = 6 * time.Hour
	}
	if cfg.Budget == nil {
		cfg.Budget = f.budget()
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = f.top
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.LicenceRecheck <= 0 {
		cfg.LicenceRecheck = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &GraphPoller{cfg: cfg, feed: f, cp: NewCheckpoint(cfg.KV, f.name), status: newStatusWriter(cfg.KV, f.name, "", cfg.Now),
		log: cfg.Logger.With("feed", f.name), seen: newSeenSet(cfg.KV, f.name, cfg.Rescan > 0)}
}

// graphCursor is a Graph feed's checkpoint.
type graphCursor struct {
	Since time.Time `json:"since"` // every record timestamped before it is stored
	// Rescanned is when the last re-scan of the Rescan horizon finished.
	Rescanned time.Time `json:"rescanned,omitzero"`
}

// ErrNoLicence reports a tenant without the licence a feed needs.
var ErrNoLicence = errors.New("feeds: the tenant lacks the licence this feed needs")

// Run polls until ctx ends. A failed poll is logged and retried at the next
// interval; a tenant without the licence is told once, then asked again every
// LicenceRecheck, while the other feeds keep running. Run returns nil when ctx
// ends.
func (p *GraphPoller) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := p.Poll(ctx)
		next := p.cfg.Interval
		switch {
		case errors.Is(err, ErrNoLicence):
			next = p.cfg.LicenceRecheck
		case err != nil && ctx.Err() == nil:
			p.log.Error("poll failed", "err", err)
		case n > 0:
			p.log.Debug("published events", "events", n)
		}
		t.Reset(next)
	}
}

// Poll reads every record timestamped since the cursor (minus the overlap), in
// windows oldest first, publishes each state once and moves the cursor after
// each window is stored. It returns the number of new events.
func (p *GraphPoller) Poll(ctx context.Context) (int, error) {
	n, err := p.poll(ctx)
	if err != nil && ctx.Err() == nil {
		if errors.Is(err, ErrNoLicence) {
			p.park(ctx, err)
		} else {
			p.cfg.Observer.Failed(p.feed.name, "", err)
		}
		p.status.fail(err)
		if ferr := p.status.flush(ctx, true); ferr != nil {
			p.log.Warn("status not written", "err", ferr)
		}
	}
	return n, err
}

func (p *GraphPoller) poll(ctx context.Context) (int, error) {
	p.status.load(ctx)
	var cur graphCursor
	found, err := p.cp.Load(ctx, &cur)
	if err != nil {
		return 0, err
	}
	now := p.cfg.Now().UTC()
	if !found {
		cur.Since = now.Add(-p.cfg.Lookback).Truncate(time.Second)
	}
	end := now.Truncate(time.Second)
	from := cur.Since.Add(-p.cfg.Overlap).Truncate(time.Second)
	if err := p.seen.load(ctx); err != nil {
		return 0, err
	}
	keep := from
	if p.cfg.Rescan > 0 {
		keep = minTime(keep, now.Add(-p.cfg.Rescan).Truncate(time.Second))
	}
	p.seen.prune(keep)
	total := 0
	for from.Before(end) {
		to := minTime(from.Add(p.cfg.Window), end)
		n, err := p.window(ctx, from, to)
		total += n
		if err != nil {
			return total, err
		}
		if to.After(cur.Since) {
			cur.Since = to
			if err := p.cp.Save(ctx, cur); err != nil {
				return total, err
			}
		}
		p.status.update(func(s *StatusLine) { s.Cursor = cur.Since })
		_ = p.status.flush(ctx, false)
		from = to
	}
	if p.cfg.Rescan > 0 && now.Sub(cur.Rescanned) >= p.cfg.RescanEvery {
		// Offline detections appear up to 48 h late with their original
		// timestamps, far behind the cursor: read the whole horizon in one
		// listing; what is already stored is skipped by id and state.
		rfrom := maxTime(now.Add(-p.cfg.Rescan).Truncate(time.Second), p.seen.horizon())
		n, err := p.window(ctx, rfrom, end)
		total += n
		if err != nil {
			return total, fmt.Errorf("re-scan: %w", err)
		}
		if n > 0 {
			p.log.Info("re-scan found records published late", "events", n, "from", rfrom)
		}
		cur.Rescanned = now
		found = false // save below
	}
	if err := p.seen.save(ctx); err != nil {
		return total, err
	}
	if !found {
		if err := p.cp.Save(ctx, cur); err != nil {
			return total, err
		}
	}
	p.unpark(ctx)
	p.cfg.Observer.Lag(p.feed.name, "", p.cfg.Now().Sub(cur.Since))
	p.status.update(func(s *StatusLine) {
		s.Cursor, s.LastSuccess, s.LastError, s.LastErrorAt = cur.Since, p.cfg.Now().UTC(), "", time.Time{}
	})
	if err := p.status.flush(ctx, true); err != nil {
		p.log.Warn("status not written", "err", err)
	}
	return total, nil
}

// window publishes every record with from <= field <= to. It uses only the
// operators Graph documents for these properties (signIn.createdDateTime
// supports eq, le and ge: https://learn.microsoft.com/graph/api/resources/signin);
// a record on the boundary is read by two windows and stored once.
func (p *GraphPoller) window(ctx context.Context, from, to time.Time) (int, error) {
	filter := p.feed.field + " ge " + from.UTC().Format(time.RFC3339) + " and " + p.feed.field + " le " + to.UTC().Format(time.RFC3339)
	q := "$filter=" + strings.ReplaceAll(url.QueryEscape(filter), "+", "%20") + "&$top=" + strconv.Itoa(int(p.cfg.PageSize))
	link := strings.TrimRight(p.cfg.Graph.GetAdapter().GetBaseUrl(), "/") + "/" + p.feed.path + "?" + q
	published := 0
	var versions [][2]string // by pipeline tag: a revised feed's record id and version key
	pl := newPipeline(p.cfg.JS, 512, true, func(tag int, isNew bool, env *event.Envelope) {
		if p.feed.revisions != nil {
			p.seen.add(versions[tag][0], env.Time)
			p.seen.add(versions[tag][1], env.Time)
		} else {
			p.seen.add(env.ID, env.Time)
		}
		if isNew {
			published++
			if p.cfg.OnPublished != nil {
				p.cfg.OnPublished(*env)
			}
		}
	})
	defer func() {
		if published > 0 {
			p.cfg.Observer.Published(p.feed.name, "", published)
			p.status.addEvents(published)
		}
	}()
	for pageNo := 0; link != ""; pageNo++ {
		pg, err := p.get(ctx, link)
		if err != nil {
			return published, fmt.Errorf("%s page %d: %w", p.feed.path, pageNo, err)
		}
		p.cfg.Observer.Fetched(p.feed.name, "", "page")
		for i, raw := range pg.Value {
			env, err := event.NormalizeAs(p.feed.source, p.cfg.Tenant, raw)
			if err != nil {
				p.log.Warn("skipping a record that does not normalise", "err", err)
				p.cfg.Observer.Failed(p.feed.name, "", err)
				continue
			}
			tag := i
			if p.feed.revisions != nil {
				// One version of the record per content fingerprint: an
				// unchanged re-read is skipped, a changed one is an update.
				fp := contentFingerprint(raw, p.feed.revisions)
				ver := env.ID + "#" + fp
				if p.seen.has(ver) {
					continue
				}
				base := env.ID
				if p.seen.has(base) {
					env.ID = base + event.RevisionMark + fp
				}
				tag = len(versions)
				versions = append(versions, [2]string{base, ver})
			} else if p.seen.has(env.ID) {
				continue
			}
			if err := pl.add(ctx, env, tag); err != nil {
				return published, err
			}
		}
		link = pg.NextLink
	}
	if err := pl.drain(ctx); err != nil {
		return published, err
	}
	return published, nil
}

// get fetches one page within the budget, retrying throttles; a missing licence
// becomes ErrNoLicence with one clear message.
func (p *GraphPoller) get(ctx context.Context, link string) (page, error) {
	var last error
	for attempt := 1; attempt <= p.cfg.MaxAttempts; attempt++ {
		if err := p.cfg.Budget.Wait(ctx, PriorityPoll); err != nil {
			return page{}, err
		}
		ri, err := nextRequest(link)
		if err != nil {
			return page{}, err
		}
		pg, err := getRaw(ctx, p.cfg.Graph, ri)
		if err == nil {
			return pg, nil
		}
		if ctx.Err() != nil {
			return page{}, ctx.Err()
		}
		var oe *odataerrors.ODataError
		if !errors.As(err, &oe) {
			return page{}, err
		}
		code := ""
		if me := oe.GetErrorEscaped(); me != nil && me.GetCode() != nil {
			code = *me.GetCode()
		}
		switch {
		case code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
			return page{}, fmt.Errorf("%w: %s (HTTP %d %s)", ErrNoLicence, p.feed.licence, oe.ResponseStatusCode, code)
		case oe.ResponseStatusCode == http.StatusTooManyRequests || oe.ResponseStatusCode >= 500:
			var ra time.Duration
			if h := oe.GetResponseHeaders(); h != nil {
				if v := h.Get("Retry-After"); len(v) > 0 {
					if s, err := strconv.ParseFloat(v[0], 64); err == nil {
						ra = time.Duration(s * float64(time.Second))
					}
				}
			}
			d := backoff(attempt, time.Second, time.Minute, ra)
			if oe.ResponseStatusCode == http.StatusTooManyRequests {
				p.cfg.Observer.Throttled(p.feed.name, "")
				p.cfg.Budget.Throttled(d)
			} else if err := sleepCtx(ctx, d); err != nil {
				return page{}, err
			}
			last = describe(err)
			continue
		}
		return page{}, describe(err)
	}
	return page{}, fmt.Errorf("giving up after %d attempts: %w", p.cfg.MaxAttempts, last)
}
