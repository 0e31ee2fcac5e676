package m365sim

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Management Activity API subscription behaviour that clients get wrong.
//
//   - Starting a subscription again within 15 minutes is refused with HTTP 403
//     and body code "429": "Too many frequent subscription start requests.
//     Please retry again after 14m 56s" (seen by production clients:
//     elastic/integrations#15476, opensearch-project/data-prepper#6231; the
//     reference says to wait 15 minutes between start requests:
//     https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-reference#start-a-subscription).
//     The emulator applies it per content type to starts that would enable
//     it (an enabled one answers AF20024 first), on by default.
//   - Right after a start, listings may still answer AF20023 "The subscription
//     was disabled." (wazuh/wazuh#29674); SetStartSettle sets how many.
//   - After a start "you will have access to new content from that point
//     forward": content created while the subscription was stopped, or before
//     its first start, is never listed (Microsoft lists nothing from before
//     then; first content can take up to 12 hours after a subscription is
//     created). Both per the reference above ("Start a subscription": "After
//     the subscription is created, it can take up to 12 hours for the first
//     content blobs to become available"; after a stop and restart, content
//     of the stopped period is not available). Tests that mean a
//     subscription started before their content call StartSubscription first;
//     SetHideContentBeforeSubscription(false) is the old, lenient behaviour.

// startGap is how long Microsoft wants between starts of a subscription.
const startGap = 15 * time.Minute

// manageKnobs are the tenant's Management Activity subscription settings.
type manageKnobs struct {
	noStartThrottle bool
	startSettle     int
	showBeforeStart bool
}

// span is a period when a subscription was enabled (to zero: still is).
type span struct{ from, to time.Time }

// SetStartThrottle turns the 15-minute start throttle on (the default) or off.
func (t *Tenant) SetStartThrottle(on bool) {
	t.mu.Lock()
	t.mgmt.noStartThrottle = !on
	t.mu.Unlock()
}

// SetStartSettle makes the next n listings of a content type after each start
// answer AF20023 (default 0).
func (t *Tenant) SetStartSettle(n int) {
	t.mu.Lock()
	t.mgmt.startSettle = max(n, 0)
	t.mu.Unlock()
}

// SetHideContentBeforeSubscription hides content created before a content
// type's subscription first started (the default, as Microsoft does); off
// lists it, for a test that only means "subscribed long ago".
func (t *Tenant) SetHideContentBeforeSubscription(on bool) {
	t.mu.Lock()
	t.mgmt.showBeforeStart = !on
	t.mu.Unlock()
}

// StartSubscription enables contentType's subscription now, as an accepted
// call of subscriptions/start would (without its 15-minute throttle): content
// created from now on is listed, and a poller that lists the subscriptions
// finds it enabled and does not start it. Starting an enabled one does nothing.
func (t *Tenant) StartSubscription(contentTypes ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range contentTypes {
		ct, ok := canonContentType(c)
		if !ok {
			return fmt.Errorf("m365sim: invalid content type %q", c)
		}
		sub := t.st.subs[ct]
		if sub != nil && sub.Status == "enabled" {
			continue
		}
		if sub == nil {
			sub = &subscription{ContentType: ct, started: t.now()}
			t.st.subs[ct] = sub
		}
		t.startedLocked(sub)
		sub.Status = "enabled"
	}
	return nil
}

// subscribedSinceLocked enables the content types' subscriptions as if they
// had been started at from (the seeded organisation has been collecting its
// audit content all along).
func (t *Tenant) subscribedSinceLocked(from time.Time, cts ...string) {
	for _, ct := range cts {
		sub := &subscription{ContentType: ct, Status: "enabled", started: from, lastStart: from, spans: []span{{from: from}}}
		t.st.subs[ct] = sub
	}
}

// ContentTypes lists the Management Activity content types.
func ContentTypes() []string { return slices.Clone(contentTypes) }

// startThrottledLocked refuses a start within startGap of the last accepted
// one with Microsoft's 403 / "429" body.
func (t *Tenant) startThrottledLocked(sub *subscription) *resp {
	if t.mgmt.noStartThrottle || sub == nil || sub.lastStart.IsZero() {
		return nil
	}
	left := startGap - t.now().Sub(sub.lastStart)
	if left <= 0 {
		return nil
	}
	secs := int(left.Round(time.Second) / time.Second)
	return manageError(http.StatusForbidden, "429",
		fmt.Sprintf("Too many frequent subscription start requests. Please retry again after %dm %ds", secs/60, secs%60))
}

// startedLocked records an accepted start.
func (t *Tenant) startedLocked(sub *subscription) {
	now := t.now()
	sub.lastStart = now
	if sub.Status != "enabled" {
		sub.spans = append(sub.spans, span{from: now})
	}
	sub.settle = t.mgmt.startSettle
}

// stopLocked closes the open enabled period.
func (s *subscription) stopLocked(now time.Time) {
	if n := len(s.spans); n > 0 && s.spans[n-1].to.IsZero() {
		s.spans[n-1].to = now
	}
}

// subscribedAtLocked says whether content created at c is listed: created
// while the subscription was enabled, or before its first start when that is
// not hidden.
func (t *Tenant) subscribedAtLocked(sub *subscription, c time.Time) bool {
	if len(sub.spans) == 0 {
		return true
	}
	if c.Before(sub.spans[0].from) {
		return t.mgmt.showBeforeStart
	}
	for _, sp := range sub.spans {
		if !c.Before(sp.from) && (sp.to.IsZero() || c.Before(sp.to)) {
			return true
		}
	}
	return false
}
