package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// Management Activity subscriptions, as Microsoft runs them
// (https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference):
//   - the poller lists the subscriptions once and starts only the content
//     types that are not enabled: frequent starts are refused with HTTP 403 and
//     body code "429", "Too many frequent subscription start requests. Please
//     retry again after 14m 56s" (elastic/integrations#15476,
//     opensearch-project/data-prepper#6231). Such a content type waits as told
//     while the others keep running;
//   - AF20023 from a subscription that subscriptions/list shows enabled is
//     one settling after a start (wazuh/wazuh#29674): listings are retried
//     with backoff, up to SettleAttempts, without starting it again; one
//     shown disabled is started again;
//   - after a start "you will have access to new content from that point
//     forward": content created before it, or while the subscription was
//     stopped, is gone. The poller reports that window of possible loss in
//     the feed status and the audit trail.

// ErrStartThrottled: Microsoft refused a subscription start as too frequent.
var ErrStartThrottled = errors.New("feeds: Microsoft refused the subscription start as too frequent")

// GapRecorder appends to the audit trail (the engine's audit writer).
type GapRecorder interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

var retryAfterText = regexp.MustCompile(`(?i)retry again after\s*(?:(\d+)\s*h\s*)?(?:(\d+)\s*m\s*)?(?:(\d+)\s*s)?`)

// startThrottle reads Microsoft's start throttling answer (403, code "429")
// and the wait it names ("14m 56s"; 15 minutes when it names none).
func startThrottle(err error) (time.Duration, bool) {
	ae := apiErrorOf(err)
	if ae == nil || ae.Code != "429" {
		return 0, false
	}
	wait := time.Duration(0)
	if m := retryAfterText.FindStringSubmatch(ae.Message); m != nil {
		for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
			if n, err := strconv.Atoi(m[i+1]); err == nil {
				wait += time.Duration(n) * unit
			}
		}
	}
	if wait <= 0 {
		wait = 15 * time.Minute
	}
	return wait + time.Second, true // the message rounds down to the second
}

// listSubscriptions returns each content type's subscription status.
func (c *manageClient) listSubscriptions(ctx context.Context) (map[string]string, error) {
	resp, err := c.do(ctx, "list subscriptions", http.MethodGet, c.root+"/subscriptions/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var subs []struct {
		ContentType string `json:"contentType"`
		Status      string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&subs); err != nil {
		return nil, fmt.Errorf("management API list subscriptions: decode: %w", err)
	}
	out := map[string]string{}
	for _, s := range subs {
		out[strings.ToLower(s.ContentType)] = strings.ToLower(s.Status)
	}
	return out, nil
}

// subscriptionStatus lists the subscriptions once for every content type.
func (p *ManagementPoller) subscriptionStatus(ctx context.Context, ct string) (string, error) {
	p.subsMu.Lock()
	defer p.subsMu.Unlock()
	if p.subs == nil {
		subs, err := p.client.listSubscriptions(ctx)
		if err != nil {
			return "", err
		}
		p.subs = subs
	}
	return p.subs[strings.ToLower(ct)], nil
}

// ensureSubscribed starts the content type's subscription unless the listing
// says it is enabled.
func (st *ctState) ensureSubscribed(ctx context.Context) error {
	status, err := st.p.subscriptionStatus(ctx, st.ct)
	if err != nil {
		st.log.Warn("subscriptions not listed; starting this one", "err", err)
	}
	if status == "enabled" {
		st.subscribed = true
		return nil
	}
	reason := "the subscription was not enabled when the poller started"
	if status != "" {
		reason = "the subscription was " + status + " when the poller started"
	}
	return st.subscribe(ctx, reason)
}

// subscribe starts the subscription; a throttled start is not tried again
// before Microsoft's wait has passed. Content created before the start since
// the cursor is reported as a window of possible loss.
func (st *ctState) subscribe(ctx context.Context, reason string) error {
	cfg := st.p.cfg
	st.loadStartAfter(ctx)
	now := cfg.Now().UTC()
	if now.Before(st.startAfter) {
		return fmt.Errorf("subscribe to %s: %w; next start after %s", st.ct, ErrStartThrottled, st.startAfter.Format(time.RFC3339))
	}
	err := st.p.client.start(ctx, st.ct)
	if wait, ok := startThrottle(err); ok {
		st.startAfter = now.Add(wait)
		st.saveStartAfter(ctx)
		cfg.Observer.Throttled(FeedManagementActivity, st.ct)
		st.log.Warn("Microsoft refused the subscription start as too frequent; waiting as told, the other content types keep running",
			"wait", wait, "until", st.startAfter)
		return fmt.Errorf("subscribe to %s: %w; next start after %s (%w)", st.ct, ErrStartThrottled, st.startAfter.Format(time.RFC3339), err)
	}
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", st.ct, err)
	}
	st.subscribed = true
	st.mu.Lock()
	from := st.cur.Start
	st.mu.Unlock()
	if from.IsZero() || !from.Before(now) {
		return nil
	}
	return st.recordGap(ctx, Gap{From: from, To: now, Reason: reason + "; Microsoft lists only content created after a subscription starts"})
}

// settling says whether err is AF20023 from a subscription that the
// subscription list shows enabled: one just started, not yet serving.
func (st *ctState) settling(ctx context.Context, err error) bool {
	if ae := apiErrorOf(err); ae == nil || ae.Code != "AF20023" {
		return false
	}
	subs, lerr := st.p.client.listSubscriptions(ctx)
	return lerr == nil && subs[strings.ToLower(st.ct)] == "enabled"
}

// recordGap reports a window of possible loss in the status and the audit trail.
func (st *ctState) recordGap(ctx context.Context, g Gap) error {
	cfg := st.p.cfg
	st.log.Warn("window of possible loss", "from", g.From, "to", g.To, "reason", g.Reason)
	if st.live {
		st.status.update(func(s *StatusLine) {
			s.Gaps = append(s.Gaps, g)
			if len(s.Gaps) > maxGaps {
				s.Gaps = s.Gaps[len(s.Gaps)-maxGaps:]
			}
		})
		if err := st.status.flush(ctx, true); err != nil {
			st.log.Warn("status not written", "err", err)
		}
	}
	if cfg.Audit == nil {
		return nil
	}
	from, to := g.From.UTC().Format(time.RFC3339), g.To.UTC().Format(time.RFC3339)
	rec := audit.Record{
		ID:       bus.DerivedID("feed-gap", cfg.Tenant, FeedManagementActivity, st.ct, from, to),
		TenantID: cfg.Tenant, Actor: audit.Actor{Kind: "engine", Name: "feeds"}, Outcome: audit.Failed,
		Target: map[string]string{"feed": FeedManagementActivity, "content_type": st.ct, "from": from, "to": to},
		Detail: fmt.Sprintf("window of possible loss: %s records created from %s to %s may never be read: %s", st.ct, from, to, g.Reason),
	}
	if _, err := cfg.Audit.Append(ctx, rec); err != nil {
		return fmt.Errorf("audit the window of possible loss of %s: %w", st.ct, err)
	}
	return nil
}

// startAfterDoc is the stored start wait of one content type.
type startAfterDoc struct {
	StartAfter time.Time `json:"start_after"`
}

func (st *ctState) startAfterKey() *Checkpoint {
	return &Checkpoint{kv: st.p.cfg.KV, key: bus.SubscriptionStartAfterKey(st.ct)}
}

// loadStartAfter reads, once, the start wait an earlier process was told, so
// that a restart does not call subscriptions/start again before Microsoft's
// wait is over (each refused start may extend it). Unreadable state only
// costs one start attempt: it is logged, not fatal.
func (st *ctState) loadStartAfter(ctx context.Context) {
	if st.waitLoaded || !st.live {
		return
	}
	var d startAfterDoc
	found, err := st.startAfterKey().Load(ctx, &d)
	if err != nil {
		st.log.Warn("stored subscription start wait not read", "err", err)
		return
	}
	st.waitLoaded = true
	if !found || !d.StartAfter.After(st.startAfter) {
		return
	}
	// Microsoft's wait is 15 minutes; a stored one far longer is not its
	// answer (a clock jump, or a tampered bucket) and would stop the feed.
	if limit := st.p.cfg.Now().UTC().Add(maxStartWait); d.StartAfter.After(limit) {
		st.log.Warn("stored subscription start wait ignored: longer than Microsoft ever asks", "start_after", d.StartAfter, "max", maxStartWait)
		return
	}
	st.startAfter = d.StartAfter
}

// maxStartWait bounds a stored start wait (Microsoft asks for 15 minutes).
const maxStartWait = time.Hour

// saveStartAfter stores the start wait for the next process.
func (st *ctState) saveStartAfter(ctx context.Context) {
	if !st.live {
		return
	}
	if err := st.startAfterKey().Save(ctx, startAfterDoc{StartAfter: st.startAfter}); err != nil {
		st.log.Warn("subscription start wait not stored; a restart may ask again", "err", err)
	}
}
