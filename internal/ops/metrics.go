package ops

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's counters, histograms and gauges.
type Metrics struct {
	events         *prometheus.CounterVec
	matches        *prometheus.CounterVec
	actions        *prometheus.CounterVec
	eventToAction  prometheus.Histogram
	graphCalls     *prometheus.CounterVec
	graphThrottles *prometheus.CounterVec
	feedLag        *prometheus.GaugeVec
	reloads        *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_events_total", Help: "Normalised events taken in, by source and kind.",
		}, []string{"source", "kind"}),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_playbook_matches_total", Help: "Playbook matches, by playbook.",
		}, []string{"playbook"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_actions_total", Help: "Action requests reaching a final or waiting outcome, by action and outcome.",
		}, []string{"action", "outcome"}),
		eventToAction: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "responder_event_to_action_seconds",
			Help:    "Time from the source event to the action's outcome, for playbook actions.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		graphCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_graph_calls_total", Help: "Microsoft Graph and Management API calls, by service and HTTP status (0: no response).",
		}, []string{"service", "status"}),
		graphThrottles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_graph_throttles_total", Help: "Throttled Microsoft calls (429, AF429), by service.",
		}, []string{"service"}),
		feedLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "responder_feed_lag_seconds", Help: "How far each feed's checkpoint is behind now, by feed and content type.",
		}, []string{"feed", "content_type"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_playbook_reloads_total", Help: "Playbook reloads (SIGHUP or changed files), by result: loaded, or refused (the last good set stays).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.matches, m.actions, m.eventToAction, m.graphCalls, m.graphThrottles, m.feedLag, m.reloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ops: register metrics: %w", err)
		}
	}
	return m, nil
}

// Event counts one event taken in.
func (m *Metrics) Event(source, kind string) {
	if m != nil {
		m.events.WithLabelValues(source, kind).Inc()
	}
}

// Match counts one playbook match.
func (m *Metrics) Match(playbook string) {
	if m != nil {
		m.matches.WithLabelValues(playbook).Inc()
	}
}

// Action counts one action outcome; sinceEvent (time from the source event,
// 0 when there is none, as for analyst requests) feeds the latency histogram.
func (m *Metrics) Action(action, outcome string, sinceEvent time.Duration) {
	if m == nil {
		return
	}
	m.actions.WithLabelValues(action, outcome).Inc()
	if sinceEvent > 0 {
		m.eventToAction.Observe(sinceEvent.Seconds())
	}
}

// GraphCall counts one call to a Microsoft service ("graph", "identity_protection",
// "exchange", "management"…) with its HTTP status (0: transport error).
func (m *Metrics) GraphCall(service string, status int) {
	if m != nil {
		m.graphCalls.WithLabelValues(service, strconv.Itoa(status)).Inc()
	}
}

// GraphThrottle counts one throttled call.
func (m *Metrics) GraphThrottle(service string) {
	if m != nil {
		m.graphThrottles.WithLabelValues(service).Inc()
	}
}

// FeedLag sets how far a feed is behind.
func (m *Metrics) FeedLag(feed, contentType string, lag time.Duration) {
	if m != nil {
		m.feedLag.WithLabelValues(feed, contentType).Set(lag.Seconds())
	}
}

// PlaybookReload counts one reload of the playbooks: loaded or refused.
func (m *Metrics) PlaybookReload(loaded bool) {
	if m != nil {
		result := "refused"
		if loaded {
			result = "loaded"
		}
		m.reloads.WithLabelValues(result).Inc()
	}
}
