package m365sim

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is a token bucket: Capacity tokens, refilled at Capacity per Per.
type Limit struct {
	Capacity float64       `json:"capacity"`
	Per      time.Duration `json:"per"`
}

// Limits are Microsoft's published throttling budgets (see doc.go for sources).
type Limits struct {
	// Entra ID "identity and access" resource units per app+tenant. Until
	// SetLimits is called it follows the tenant's size (< 50 users: 3,500,
	// 50–500: 5,000, more: 8,000 RU / 10 s); DefaultLimits shows the small size.
	EntraResourceUnits Limit `json:"entra_resource_units"`
	// Entra writes per app+tenant: 3,000 / 2 min 30 s.
	EntraWrites Limit `json:"entra_writes"`
	// Entra writes per tenant (all apps): 18,000 / 5 min.
	EntraTenantWrites Limit `json:"entra_tenant_writes"`
	// Outlook: 10,000 requests / 10 min per app and mailbox.
	OutlookRequests Limit `json:"outlook_requests"`
	// Outlook: concurrent requests per app and mailbox (4).
	OutlookConcurrency int `json:"outlook_concurrency"`
	// Identity Protection and Conditional Access: 1 request / s per tenant.
	IdentityProtectionCA Limit `json:"identity_protection_ca"`
	// Identity and access reports (sign-ins): 5 requests / 10 s per app+tenant.
	Reports Limit `json:"reports"`
	// Management Activity API: 2,000 requests / min per tenant.
	ManagementActivity Limit `json:"management_activity"`
}

// DefaultLimits returns Microsoft's published budgets.
func DefaultLimits() Limits {
	return Limits{
		EntraResourceUnits:   Limit{3500, 10 * time.Second},
		EntraWrites:          Limit{3000, 150 * time.Second},
		EntraTenantWrites:    Limit{18000, 5 * time.Minute},
		OutlookRequests:      Limit{10000, 10 * time.Minute},
		OutlookConcurrency:   4,
		IdentityProtectionCA: Limit{1, time.Second},
		Reports:              Limit{5, 10 * time.Second},
		ManagementActivity:   Limit{2000, time.Minute},
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

type throttler struct {
	mu      sync.Mutex
	now     func() time.Time
	on      bool
	lim     Limits
	buckets map[string]*bucket
	// sized: EntraResourceUnits follows the tenant size (until SetLimits).
	sized bool
}

func newThrottler(now func() time.Time, on bool) *throttler {
	return &throttler{now: now, on: on, lim: DefaultLimits(), buckets: map[string]*bucket{}, sized: true}
}

// SetThrottling turns the throttling budgets on or off (buckets start full).
func (t *Tenant) SetThrottling(on bool) {
	t.thr.mu.Lock()
	t.thr.on = on
	t.thr.buckets = map[string]*bucket{}
	t.thr.mu.Unlock()
}

// SetLimits replaces the budgets (buckets start full).
func (t *Tenant) SetLimits(l Limits) {
	t.thr.mu.Lock()
	t.thr.lim = l
	t.thr.sized = false
	t.thr.buckets = map[string]*bucket{}
	t.thr.mu.Unlock()
}

// CurrentLimits returns the budgets in force.
func (t *Tenant) CurrentLimits() Limits {
	t.thr.mu.Lock()
	defer t.thr.mu.Unlock()
	return t.thr.lim
}

// take removes cost tokens from the named bucket; on failure it returns how
// long until enough tokens are back.
func (th *throttler) take(key string, l Limit, cost float64) (bool, time.Duration) {
	if l.Capacity <= 0 || l.Per <= 0 {
		return true, 0
	}
	now := th.now()
	b := th.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.Capacity, last: now}
		th.buckets[key] = b
	}
	rate := l.Capacity / l.Per.Seconds()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.Capacity, b.tokens+el*rate)
		b.last = now
	}
	if b.tokens >= cost {
		b.tokens -= cost
		return true, 0
	}
	need := (cost - b.tokens) / rate
	return false, time.Duration(need * float64(time.Second))
}

func (th *throttler) peek(key string, l Limit) float64 {
	b := th.buckets[key]
	if b == nil {
		return l.Capacity
	}
	return b.tokens
}

func retrySeconds(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// ruLimit is the resource-unit budget: by tenant size (S < 50 users: 3,500;
// M ≤ 500: 5,000; L: 8,000 per 10 s) unless a test set the limits.
func (th *throttler) ruLimit(users int) Limit {
	if !th.sized {
		return th.lim.EntraResourceUnits
	}
	switch {
	case users > 500:
		return Limit{8000, 10 * time.Second}
	case users >= 50:
		return Limit{5000, 10 * time.Second}
	}
	return Limit{3500, 10 * time.Second}
}

// entraCost is the resource-unit cost of a directory request.
func entraCost(r *req) (ru float64, write bool) {
	if r.method != http.MethodGet {
		return 1, true
	}
	ru = 1
	if len(r.segs) >= 1 && strings.EqualFold(r.segs[0], "users") {
		ru = 2
	}
	if r.q("$select") != "" {
		ru--
	}
	if r.q("$expand") != "" {
		ru++
	}
	if s := r.q("$top"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n < 20 {
			ru--
		}
	}
	if ru < 1 {
		ru = 1
	}
	return ru, false
}

// throttle applies the budget of a route class; nil = allowed.
func (t *Tenant) throttle(r *req, class throttleClass, inflight int) *resp {
	users := 0
	if class == thrEntra {
		t.mu.RLock()
		users = len(t.st.users)
		t.mu.RUnlock()
	}
	th := t.thr
	th.mu.Lock()
	defer th.mu.Unlock()
	if !th.on {
		return nil
	}
	app := r.tok.AppID
	tenant := t.opts.TenantID
	switch class {
	case thrEntra:
		ru, write := entraCost(r)
		if ok, wait := th.take("ru/"+app, th.ruLimit(users), ru); !ok {
			return t.entra429(r, wait, "ResourceUnitLimitExceeded", "Tenant_Application/ReadWrite/"+app+"/"+tenant)
		}
		if write {
			if ok, wait := th.take("w/"+app, th.lim.EntraWrites, 1); !ok {
				return t.entra429(r, wait, "WriteLimitExceeded", "Tenant_Application/Write/"+app+"/"+tenant)
			}
			if ok, wait := th.take("tw", th.lim.EntraTenantWrites, 1); !ok {
				return t.entra429(r, wait, "WriteLimitExceeded", "Tenant/Write/"+tenant)
			}
		}
	case thrOutlook:
		if th.lim.OutlookConcurrency > 0 && inflight > th.lim.OutlookConcurrency {
			res := t.graphError(r, http.StatusTooManyRequests, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
			res.hdr.Set("Retry-After", "1")
			return res
		}
		if ok, wait := th.take("mbx/"+app+"/"+r.mailbox, th.lim.OutlookRequests, 1); !ok {
			res := t.graphError(r, http.StatusTooManyRequests, "ApplicationThrottled", "Application is over its MailboxRequests limit.")
			res.hdr.Set("Retry-After", retrySeconds(wait))
			return res
		}
	case thrIdPCA:
		if ok, _ := th.take("idpca", th.lim.IdentityProtectionCA, 1); !ok {
			// Documented: 429 without Retry-After.
			return t.graphError(r, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
		}
	case thrReports:
		if ok, wait := th.take("rep/"+app, th.lim.Reports, 1); !ok {
			res := t.graphError(r, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
			res.hdr.Set("Retry-After", retrySeconds(wait))
			return res
		}
	}
	return nil
}

func (t *Tenant) entra429(r *req, wait time.Duration, info, scope string) *resp {
	res := t.graphError(r, http.StatusTooManyRequests, "TooManyRequests", "Please retry again later.")
	res.hdr.Set("Retry-After", retrySeconds(wait))
	res.hdr.Set("x-ms-throttle-scope", scope)
	res.hdr.Set("x-ms-throttle-information", info)
	return res
}

// annotateEntra adds the resource-unit headers Entra sends on success.
func (th *throttler) annotateEntra(r *req, res *resp) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if !th.on {
		return
	}
	ru, _ := entraCost(r)
	res.hdr.Set("x-ms-resource-unit", strconv.Itoa(int(ru)))
	l := th.lim.EntraResourceUnits
	if th.sized {
		l = th.ruLimit(0)
	}
	used := 1 - th.peek("ru/"+r.tok.AppID, l)/math.Max(l.Capacity, 1)
	if used >= 0.8 {
		res.hdr.Set("x-ms-throttle-limit-percentage", fmt.Sprintf("%.1f", used))
	}
}

// manageThrottle applies the Management Activity API budget (AF429 as 403).
func (t *Tenant) manageThrottle(r *req, method string) *resp {
	th := t.thr
	th.mu.Lock()
	defer th.mu.Unlock()
	if !th.on {
		return nil
	}
	// PublisherIdentifier selects a dedicated quota; without it calls share one.
	pub := firstNonEmpty(r.q("PublisherIdentifier"), "00000000-0000-0000-0000-000000000000")
	if ok, _ := th.take("manage/"+strings.ToLower(pub), th.lim.ManagementActivity, 1); !ok {
		return manageError(http.StatusForbidden, "AF429", fmt.Sprintf("Too many requests. Method=%s, PublisherId=%s", method, pub))
	}
	return nil
}
