package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrUnknown is returned by Run for a name that is not registered.
var ErrUnknown = errors.New("bench: unknown scenario")

// Options are the knobs every scenario understands. Zero values take each
// scenario's documented default.
type Options struct {
	// N is the size of the run (requests, users, samples: see each scenario).
	N int
	// Concurrency is the action worker's requests in flight (default 128, the
	// engine's default).
	Concurrency int
	// Dir is where embedded NATS stores its streams ("" = a temporary directory,
	// removed afterwards).
	Dir string
	// Progress receives human-readable progress lines (nil = none).
	Progress io.Writer
	// Logger receives the engine's logs (nil = discarded).
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) progressf(format string, a ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", a...)
	}
}

// dir returns o.Dir or a new temporary directory and its cleanup.
func (o Options) dir() (string, func(), error) {
	if o.Dir != "" {
		return o.Dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "responder-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("bench: temporary directory: %w", err)
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

// Scenario is one named benchmark.
type Scenario struct {
	Name        string
	Description string
	// Owner is the package that provides the measured code path.
	Owner string
	Run   func(ctx context.Context, o Options) (Result, error)
}

// Scenarios returns the registry, an explicit list. Owner names the package
// whose code path a scenario measures.
func Scenarios() map[string]Scenario {
	list := []Scenario{
		{Name: "bus", Owner: "internal/actions", Run: runBus,
			Description: "action request to acknowledged result over NATS with the real worker, audit writer and KV, no-op Graph, GOMAXPROCS 2: requests per second (goal >= 2,000; checks: nothing left in the stream, every request succeeded once)"},
		{Name: "latency", Owner: "internal/engine", Run: runLatency,
			Description: "event published by the feed to the first Graph write, p50/p99, at 100 events/s of background load, throttling on and 50 ms Graph latency (goal p99 < 1 s, poll interval excluded; checks: every sample saw its Graph write and was revoked once)"},
		{Name: "contain", Owner: "internal/actions", Run: runContain,
			Description: "N users disabled and revoked under the Entra write budget with 50 ms Graph latency: elapsed time against the time the budget allows (goal <= 1.05; checks: each user disabled and revoked exactly once, every request succeeded)"},
		{Name: "purge", Owner: "internal/actions", Run: runPurge,
			Description: "N messages (default 200) hard-purged by one purge_mail request in 1, then in each of 8 mailboxes, under Outlook's 4 requests in flight per mailbox with 50 ms Graph latency: elapsed time against the time the concurrency limit allows (goal <= 1.05 for both runs; checks: nothing left, every request succeeded, never more than 4 in flight per mailbox)"},
		{Name: "block-ip", Owner: "internal/actions", Run: runBlockIP,
			Description: "a burst of N block_ip requests (default 200) in a fresh tenant under the 1 request/s Conditional Access budget with 50 ms Graph latency: elapsed time against the time the budget allows for the fewest requests, 4 + 2(ceil(N/C) - 1) (goal <= 1.10; checks: every address in Responder's named location, the policy blocks it, every request succeeded, no request beyond the fewest)"},
		{Name: "isolate", Owner: "internal/actions/defenderexec", Run: runIsolate,
			Description: "N devices (default 200) isolated by one playbook burst against the Defender API's 100 calls a minute per API (time-scaled 1/10) with 50 ms latency: elapsed time against the time the budget allows (goal <= 1.10; checks: every device isolated, every request succeeded and audited, one isolation call per device)"},
		{Name: "indicators", Owner: "internal/actions/defenderexec", Run: runIndicators,
			Description: "N file and URL indicators (default 2,000) requested at once: the fewest import calls, ceil(N/500), paced at 30 a minute, with 50 ms latency: elapsed time against that bound (goal <= 1.10; checks: every indicator in Defender naming its request, every request succeeded and audited, the fewest import calls)"},
		{Name: "ingest", Owner: "internal/feeds", Run: runIngest,
			Description: "Management Activity records read from the emulated tenant over TLS (budget on) through the whole poller into EVENTS per second, against a plain JetStream async publish in the same run (goal >= 0.5), blobs of 2,000 and 20,000 (checks: every record published once, poller peak memory < 200 MB)"},
		{Name: "audit-query", Owner: "internal/auditindex", Run: runAuditQuery,
			Description: "N audit records (default 1,000,000, a year of a busy tenant) written by the engine's writer and indexed, then filtered pages of 50 newest first (target, actor, action, request; with time, outcome, playbook) through the engine's query service as a reviewer: p99 page time (goal < 500 ms; checks: every record written, the index covers the trail, each page holds exactly the matching records)"},
		{Name: "match", Owner: "internal/playbook", Run: runMatch,
			Description: "events matched against the shipped playbooks per second"},
	}
	m := make(map[string]Scenario, len(list))
	for _, s := range list {
		m[s.Name] = s
	}
	return m
}

// Names lists the registered scenarios, sorted.
func Names(m map[string]Scenario) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Run runs the named scenario and completes its result (ratio, met, machine).
func Run(ctx context.Context, m map[string]Scenario, name string, o Options) (Result, error) {
	s, ok := m[name]
	if !ok {
		return Result{}, fmt.Errorf("%w %q (have %s)", ErrUnknown, name, strings.Join(Names(m), ", "))
	}
	res, err := s.Run(ctx, o)
	if err != nil {
		return res, err
	}
	res.Scenario = name
	res.Complete()
	return res, nil
}

// Direction says which way a ratio must go.
type Direction string

// Directions.
const (
	AtMost  Direction = "<="
	AtLeast Direction = ">="
)

// Goal is the ratio a scenario must reach.
type Goal struct {
	Dir   Direction
	Ratio float64
}

// String is the goal as printed and in JSON, e.g. "<= 1.10".
func (g Goal) String() string { return string(g.Dir) + " " + strconv.FormatFloat(g.Ratio, 'f', 2, 64) }

// Met reports whether ratio reaches the goal.
func (g Goal) Met(ratio float64) bool {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return false
	}
	switch g.Dir {
	case AtMost:
		return ratio <= g.Ratio
	case AtLeast:
		return ratio >= g.Ratio
	}
	return false
}

// Result is one scenario's figure, as printed and as JSON: one object with
// scenario, measured, unit, bound, ratio (measured / bound), goal, met, then
// whatever else the scenario reports (Extra, flattened into the object).
type Result struct {
	Scenario string
	Measured float64
	Unit     string
	Bound    float64
	// BoundNote says where the bound comes from.
	BoundNote string
	Ratio     float64
	Goal      Goal
	// Met is true only when the goal is met AND every check passed.
	Met bool
	// N and Concurrency are the run's size and the worker's requests in
	// flight (0 where a scenario has no worker).
	N, Concurrency int
	// Checks are the run's correctness checks; an empty list is a failure
	// (a scenario that checks nothing cannot be met).
	Checks []Check
	// Extra holds the scenario's other figures; keys must not clash with the
	// fields above.
	Extra map[string]any
}

// Complete computes Ratio and Met from Measured, Bound and Goal.
func (r *Result) Complete() {
	if r.Bound != 0 {
		r.Ratio = r.Measured / r.Bound
	} else {
		r.Ratio = math.Inf(1)
	}
	r.Met = r.Goal.Met(r.Ratio) && r.ChecksPassed()
}

// Check is one correctness check of a run: the result is met only when every
// check is ok.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ChecksPassed reports whether the run has checks and every one passed.
func (r *Result) ChecksPassed() bool {
	if len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// AddCheck appends a check.
func (r *Result) AddCheck(name string, ok bool, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: detail})
}

var reserved = []string{"scenario", "measured", "unit", "bound", "bound_note", "ratio", "goal", "met", "n", "concurrency", "checks"}

// MarshalJSON writes the flat object described on Result.
func (r Result) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for k, v := range r.Extra {
		if slices.Contains(reserved, k) {
			return nil, fmt.Errorf("bench: extra key %q clashes with a result field", k)
		}
		m[k] = v
	}
	m["scenario"] = r.Scenario
	m["measured"] = round(r.Measured)
	m["unit"] = r.Unit
	m["bound"] = round(r.Bound)
	if r.BoundNote != "" {
		m["bound_note"] = r.BoundNote
	}
	if math.IsInf(r.Ratio, 0) || math.IsNaN(r.Ratio) {
		m["ratio"] = nil
	} else {
		m["ratio"] = math.Round(r.Ratio*1000) / 1000
	}
	m["goal"] = r.Goal.String()
	m["met"] = r.Met
	m["n"] = r.N
	m["concurrency"] = r.Concurrency
	checks := r.Checks
	if checks == nil {
		checks = []Check{}
	}
	m["checks"] = checks
	return json.Marshal(m)
}

func round(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

// WriteText prints the figure, the bound and the ratio, then the extra figures
// sorted by name.
func (r Result) WriteText(w io.Writer) error {
	met := "met"
	if !r.Met {
		met = "NOT met"
	}
	_, err := fmt.Fprintf(w, "%s: %s %s (bound %s %s; ratio %.3f, goal %s: %s)\n",
		r.Scenario, fmtNum(r.Measured), r.Unit, fmtNum(r.Bound), r.Unit, r.Ratio, r.Goal, met)
	if err != nil {
		return err
	}
	if r.BoundNote != "" {
		fmt.Fprintf(w, "  bound: %s\n", r.BoundNote)
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := r.Extra[k]
		if f, ok := v.(float64); ok {
			v = fmtNum(f)
		}
		if _, err := fmt.Fprintf(w, "  %s: %v\n", k, v); err != nil {
			return err
		}
	}
	return nil
}

func fmtNum(f float64) string {
	switch {
	case math.IsInf(f, 0) || math.IsNaN(f):
		return fmt.Sprint(f)
	case math.Abs(f) >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case math.Abs(f) >= 1:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}

// percentile returns the p-th percentile (0..100) of sorted durations (nearest
// rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
