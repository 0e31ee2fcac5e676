package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/m365sim"
)

// latencyPlaybook fires on every high-risk detection with one Graph write. It
// has no suppression and no blast radius of its own; the worker's per-playbook
// limit (100 requests an hour by default) bounds N.
const latencyPlaybook = `name: bench-latency
enabled: true
trigger:
  source: risk_detection
  when:
    - field: raw.riskLevel
      equals: high
steps:
  - action: revoke_sessions
    target:
      user: "{{ user }}"
`

const (
	latencyLoad     = 100 // events per second in total
	latencySamples  = 10  // of which fire the playbook
	latencyBound    = time.Second
	latencyInterval = 200 * time.Millisecond
	// latencyGraphLatency is added to every Graph call.
	latencyGraphLatency = 50 * time.Millisecond
)

// runLatency runs the whole engine (risk feed, matcher, worker) against the
// emulator while 100 risk detections a second arrive, 10 of them high (the
// samples, each for its own user) and 90 low (background). For each sample it
// measures from the moment the feed published the event (the poll interval
// excluded) to the start of the first Graph write on that user, as the
// emulator's wire log saw it. N is the number of samples (default 90).
func runLatency(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 90
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	pbDir := filepath.Join(dir, "playbooks")
	if err := os.MkdirAll(pbDir, 0o700); err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(filepath.Join(pbDir, "bench-latency.yaml"), []byte(latencyPlaybook), 0o600); err != nil {
		return Result{}, err
	}
	// Microsoft's throttling on and 50 ms on every Graph call, as the other
	// scenarios run.
	sim, err := throttledTenant(o, latencyGraphLatency)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	samples := make([]m365sim.User, n)
	for i := range samples {
		samples[i] = sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("sample%05d@contoso.com", i)})
	}
	background := make([]m365sim.User, 50)
	for i := range background {
		background[i] = sim.AddUser(m365sim.User{UserPrincipalName: fmt.Sprintf("bg%05d@contoso.com", i)})
	}

	var mu sync.Mutex
	visible := map[string]time.Time{} // lower-case UPN of a sample -> published
	isSample := map[string]bool{}
	for _, u := range samples {
		isSample[strings.ToLower(u.UserPrincipalName)] = true
	}
	onEvent := func(e event.Envelope) {
		k := strings.ToLower(e.User)
		if !isSample[k] {
			return
		}
		now := time.Now()
		mu.Lock()
		if _, seen := visible[k]; !seen {
			visible[k] = now
		}
		mu.Unlock()
	}
	eng, err := engine.New(ctx, engine.Config{
		Bus:          bus.Config{StoreDir: filepath.Join(dir, "nats"), Port: -1, Name: "bench-engine"},
		Credentials:  credentials(sim),
		PlaybookDir:  pbDir,
		RiskInterval: latencyInterval,
		PageGap:      time.Millisecond,
		Workers:      o.Concurrency,
		RetryBase:    100 * time.Millisecond, RetryMax: 2 * time.Second,
		Logger:  o.logger(),
		OnEvent: onEvent,
	})
	if err != nil {
		return Result{}, err
	}
	defer eng.Close()
	runCtx, stopEngine := context.WithCancel(ctx)
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(runCtx) }()
	defer func() {
		stopEngine()
		<-engDone
	}()
	nc, err := eng.Bus().Connect(nats.Name("bench-observer"))
	if err != nil {
		return Result{}, err
	}
	defer nc.Close()
	outs, err := watchOutcomes(nc, eng.Tenant())
	if err != nil {
		return Result{}, err
	}
	defer outs.close()

	o.progressf("latency: %d samples in %d events/s for %.0fs", n, latencyLoad, float64(n)/latencySamples)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan int, 1)
	go func() { loadDone <- inject(loadCtx, sim, samples, background) }()
	err = outs.waitFor(ctx, time.Duration(n)*time.Second/latencySamples+60*time.Second, func(m map[string]actions.Outcome) bool {
		c := 0
		for _, out := range m {
			if out.Action == actions.RevokeSessions && out.Outcome.Final() {
				c++
			}
		}
		return c >= n
	})
	stopLoad()
	injected := <-loadDone
	if err != nil {
		return Result{}, err
	}

	// "Visible" is when the event was stored on EVENTS (the stream's own
	// timestamp): the feed's publish callback runs when the asynchronous ack
	// arrives, which can be after the matcher has already acted.
	stored, err := storedTimes(ctx, eng.Bus().JS, isSample)
	if err != nil {
		return Result{}, err
	}
	mu.Lock()
	for k, t := range stored {
		if v, ok := visible[k]; !ok || t.Before(v) {
			visible[k] = t
		}
	}
	mu.Unlock()

	ids := map[string]string{} // object id -> lower-case UPN
	for _, u := range samples {
		ids[strings.ToLower(u.ID)] = strings.ToLower(u.UserPrincipalName)
	}
	firstWrite := map[string]time.Time{}
	for _, w := range sim.WireLog() {
		k := writeTarget(w)
		if up, ok := ids[k]; ok {
			k = up
		}
		if !isSample[k] {
			continue
		}
		if t, ok := firstWrite[k]; !ok || w.Time.Before(t) {
			firstWrite[k] = w.Time
		}
	}
	var lat []time.Duration
	mu.Lock()
	for k, v := range visible {
		if w, ok := firstWrite[k]; ok {
			lat = append(lat, w.Sub(v))
		}
	}
	mu.Unlock()
	if len(lat) == 0 {
		return Result{}, fmt.Errorf("bench: no sample has both a published event and a Graph write")
	}
	slices.Sort(lat)
	p99 := percentile(lat, 99)
	succeeded := 0
	outs.mu.Lock()
	for _, out := range outs.got {
		if out.Action == actions.RevokeSessions && out.Outcome == audit.Succeeded {
			succeeded++
		}
	}
	outs.mu.Unlock()
	notOnce := 0
	for _, u := range samples {
		if got, _ := sim.User(u.ID); got.RevokeCount != 1 {
			notOnce++
		}
	}
	throttled := 0
	for _, w := range sim.WireLog() {
		if w.Status == 429 {
			throttled++
		}
	}
	res := Result{
		Measured: ms(p99), Unit: "ms (p99)", Bound: ms(latencyBound), N: n, Concurrency: concurrencyOr(o.Concurrency),
		BoundNote: fmt.Sprintf("p99 under 1 s from the feed publishing the event to the first Graph write (poll interval excluded), throttling on, %s on every Graph call", latencyGraphLatency),
		Goal:      Goal{AtMost, 1},
		Extra: map[string]any{
			"p50_ms":           ms(percentile(lat, 50)),
			"p99_ms":           ms(p99),
			"max_ms":           ms(lat[len(lat)-1]),
			"background_per_s": latencyLoad - latencySamples,
			"events_injected":  injected,
			"poll_interval_ms": ms(latencyInterval),
			"graph_latency_ms": ms(latencyGraphLatency),
			"graph_429":        throttled,
		},
	}
	res.AddCheck("every sample saw its Graph write", len(lat) == n,
		fmt.Sprintf("%d of %d samples have both a stored event and a Graph write on their user", len(lat), n))
	res.AddCheck("every sample revoked once", succeeded == n && notOnce == 0,
		fmt.Sprintf("%d succeeded revoke outcomes for %d samples; %d samples not revoked exactly once in the tenant", succeeded, n, notOnce))
	return res, nil
}

// inject adds 100 detections a second until every sample was injected, then
// keeps the background going until ctx ends. It returns how many it injected.
func inject(ctx context.Context, sim *m365sim.Tenant, samples, background []m365sim.User) int {
	tick := time.NewTicker(time.Second / latencyLoad)
	defer tick.Stop()
	count, next := 0, 0
	for {
		select {
		case <-ctx.Done():
			return count
		case <-tick.C:
		}
		d := m365sim.RiskDetection{RiskEventType: "unfamiliarFeatures", RiskLevel: "low", IPAddress: "203.0.113.9"}
		if count%(latencyLoad/latencySamples) == 0 && next < len(samples) {
			u := samples[next]
			next++
			d.UserID, d.UserPrincipalName, d.RiskLevel, d.RiskEventType = u.ID, u.UserPrincipalName, "high", "anonymizedIPAddress"
		} else {
			u := background[count%len(background)]
			d.UserID, d.UserPrincipalName = u.ID, u.UserPrincipalName
		}
		sim.InjectRiskDetection(d)
		count++
	}
}

// storedTimes reads EVENTS once, to its current end, and returns for each sample
// user the time its first event was stored.
func storedTimes(ctx context.Context, js jetstream.JetStream, isSample map[string]bool) (map[string]time.Time, error) {
	st, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return nil, err
	}
	last := st.CachedInfo().State.LastSeq
	out := map[string]time.Time{}
	if last == 0 {
		return out, nil
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("bench: read EVENTS: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, err
		}
		var env event.Envelope
		if json.Unmarshal(msg.Data(), &env) == nil {
			k := strings.ToLower(env.User)
			if isSample[k] {
				if t, ok := out[k]; !ok || md.Timestamp.Before(t) {
					out[k] = md.Timestamp
				}
			}
		}
		if md.Sequence.Stream >= last {
			return out, nil
		}
	}
}
