package feeds

import (
	"sync"
	"sync/atomic"
	"time"
)

// Feed names, as used in checkpoints, status records, metrics and the CLI.
const (
	FeedManagementActivity = "management_activity"
	FeedSignIns            = "signins"
	FeedRiskDetections     = "risk_detections"
	FeedRiskyUsers         = "risky_users"
)

// Observer is told about the feeds' activity; the engine adapts it to Prometheus.
// contentType is "" for the Graph feeds. Every method must be cheap and safe for
// concurrent use.
type Observer interface {
	// Published counts events newly stored on EVENTS (duplicates excluded).
	Published(feed, contentType string, n int)
	// Fetched counts one listing page ("page") or content blob ("blob").
	Fetched(feed, contentType, what string)
	// Throttled counts one throttled request (HTTP 429, AF429).
	Throttled(feed, contentType string)
	// Failed counts one failed request or poll.
	Failed(feed, contentType string, err error)
	// Lag reports how far the checkpoint is behind now.
	Lag(feed, contentType string, lag time.Duration)
}

// Counters is an Observer that keeps totals in memory (tests, `feeds status` of
// the running process). The zero value is ready to use.
type Counters struct {
	Events, Pages, Blobs, Throttles, Errors atomic.Int64

	mu  sync.Mutex
	lag map[string]time.Duration
}

var _ Observer = (*Counters)(nil)

// Published implements Observer.
func (c *Counters) Published(_, _ string, n int) { c.Events.Add(int64(n)) }

// Fetched implements Observer.
func (c *Counters) Fetched(_, _, what string) {
	if what == "blob" {
		c.Blobs.Add(1)
	} else {
		c.Pages.Add(1)
	}
}

// Throttled implements Observer.
func (c *Counters) Throttled(string, string) { c.Throttles.Add(1) }

// Failed implements Observer.
func (c *Counters) Failed(string, string, error) { c.Errors.Add(1) }

// Lag implements Observer.
func (c *Counters) Lag(feed, ct string, d time.Duration) {
	c.mu.Lock()
	if c.lag == nil {
		c.lag = map[string]time.Duration{}
	}
	c.lag[feed+"/"+ct] = d
	c.mu.Unlock()
}

// LagOf returns the last lag reported for a feed and content type.
func (c *Counters) LagOf(feed, ct string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lag[feed+"/"+ct]
}

type nopObserver struct{}

func (nopObserver) Published(string, string, int)     {}
func (nopObserver) Fetched(string, string, string)    {}
func (nopObserver) Throttled(string, string)          {}
func (nopObserver) Failed(string, string, error)      {}
func (nopObserver) Lag(string, string, time.Duration) {}
