package defenderexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/budget"
	"github.com/responder-sec/responder/internal/clock"
)

// The Defender APIs this package calls, each with its own budget (the
// "Limitations" of each page of https://learn.microsoft.com/defender-endpoint/api/).
const (
	apiMachinesList       = "machines.list"       // get-machines
	apiMachinesGet        = "machines.get"        // get-machine-by-id
	apiIsolate            = "machines.isolate"    // isolate-machine
	apiUnisolate          = "machines.unisolate"  // unisolate-machine
	apiMachineActionsList = "machineactions.list" // get-machineactions-collection
	apiMachineActionsGet  = "machineactions.get"  // get-machineaction-object
	apiIndicatorsList     = "indicators.list"     // get-ti-indicators-collection
	apiIndicatorsSubmit   = "indicators.submit"   // post-ti-indicator
	apiIndicatorsImport   = "indicators.import"   // import-ti-indicators
	apiIndicatorsDelete   = "indicators.delete"   // delete-ti-indicator-by-id
)

// Limits are the Defender API budgets the executor paces itself to.
type Limits struct {
	// PerMinute and PerHour apply to every API separately: 100 calls a minute
	// and 1,500 an hour.
	PerMinute, PerHour budget.Rate
	// Import is the import API's budget: 30 calls a minute, paced evenly (one
	// every 2 s: Microsoft does not say whether the minute may be spent in a
	// burst).
	Import budget.Rate
}

// DefaultLimits are Microsoft's published budgets.
func DefaultLimits() Limits {
	return Limits{
		PerMinute: budget.Rate{N: 100, Per: time.Minute},
		PerHour:   budget.Rate{N: 1500, Per: time.Hour},
		Import:    budget.Rate{N: 1, Per: 2 * time.Second},
	}
}

// Budgets paces calls per Defender API. Share one per process. It is safe
// for concurrent use and owns no goroutine.
type Budgets struct {
	lim   Limits
	clock clock.Clock
	mu    sync.Mutex
	per   map[string][]*budget.Bucket
}

// NewBudgets builds the budgets (zero rates take the defaults; nil clock:
// the real one).
func NewBudgets(l Limits, c clock.Clock) *Budgets {
	d := DefaultLimits()
	if l.PerMinute.N <= 0 || l.PerMinute.Per <= 0 {
		l.PerMinute = d.PerMinute
	}
	if l.PerHour.N <= 0 || l.PerHour.Per <= 0 {
		l.PerHour = d.PerHour
	}
	if l.Import.N <= 0 || l.Import.Per <= 0 {
		l.Import = d.Import
	}
	return &Budgets{lim: l, clock: clock.Or(c), per: map[string][]*budget.Bucket{}}
}

func (b *Budgets) buckets(api string) []*budget.Bucket {
	b.mu.Lock()
	defer b.mu.Unlock()
	bs := b.per[api]
	if bs == nil {
		if api == apiIndicatorsImport {
			bs = []*budget.Bucket{budget.NewWithClock(b.lim.Import, 0, b.clock)}
		} else {
			// 5% under the budget: at 2% a loaded machine still saw the odd
			// 429 (each costs a Retry-After of a second), as the
			// Conditional Access budget does (graphexec.NewBudgets).
			bs = []*budget.Bucket{budget.NewWithClock(b.lim.PerMinute, 0.05, b.clock), budget.NewWithClock(b.lim.PerHour, 0.05, b.clock)}
		}
		b.per[api] = bs
	}
	return bs
}

// Wait blocks until one call of api may go.
func (b *Budgets) Wait(ctx context.Context, api string) error {
	for _, bk := range b.buckets(api) {
		if err := bk.WaitN(ctx, 1); err != nil {
			return err
		}
	}
	return nil
}

// throttled tells api's budgets that Microsoft answered 429: the minute's
// budget waits d; the hour's only when d is longer than a minute's window
// (its count is untouched otherwise, so one 429 does not slow every later
// call to the hour's pace).
func (b *Budgets) throttled(api string, d time.Duration) {
	bs := b.buckets(api)
	bs[0].Throttled(d)
	if len(bs) > 1 && d > b.lim.PerMinute.Per {
		bs[1].Throttled(d)
	}
}

// client calls the Defender API.
type client struct {
	hc      *http.Client // adds the bearer token
	base    string       // origin, no trailing slash
	budgets *Budgets
	clock   clock.Clock
	// maxWait caps one in-place wait for a Retry-After; resends bounds them.
	maxWait time.Duration
	resends int
}

// defError is the Defender API's error body.
type defError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Target  string `json:"target"`
	} `json:"error"`
}

const maxBody = 16 << 20

// call sends one request of api within its budget and decodes the answer
// into out (nil: ignore). A 429 is resent after Retry-After (at most resends
// times, each wait at most maxWait) within the budget; other failures are
// classified once here.
func (c *client) call(ctx context.Context, api, method, path string, body, out any, perm string) (int, error) {
	return c.callPaid(ctx, api, method, path, body, out, perm, false)
}

// callPaid is call; paid says the caller already waited for the budget of
// the first attempt.
func (c *client) callPaid(ctx context.Context, api, method, path string, body, out any, perm string, paid bool) (int, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: err.Error()}
		}
		payload = b
	}
	for attempt := 0; ; attempt++ {
		if !paid || attempt > 0 {
			if err := c.budgets.Wait(ctx, api); err != nil {
				return 0, classifyTransport(err)
			}
		}
		status, err := c.once(ctx, method, path, payload, out, perm)
		var e *actions.Error
		if err == nil || !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
			return status, err
		}
		wait := e.RetryAfter
		if wait <= 0 {
			wait = time.Second << attempt
		}
		c.budgets.throttled(api, wait)
		if attempt >= c.resends || wait > c.maxWait {
			return status, err
		}
		if err := clock.Sleep(ctx, c.clock, wait); err != nil {
			return status, classifyTransport(err)
		}
	}
}

func (c *client) once(ctx context.Context, method, path string, payload []byte, out any, perm string) (int, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, &actions.Error{Class: actions.Permanent, Code: "InvalidRequest", Message: err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, classifyTransport(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, classifyTransport(err)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, classify(resp.StatusCode, resp.Header, b, perm)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, &actions.Error{Class: actions.Transient, Status: resp.StatusCode, Code: "InvalidResponse", Message: "the Defender API answer could not be read: " + err.Error()}
		}
	}
	return resp.StatusCode, nil
}

// classify turns a Defender API failure into an *actions.Error: 429 is
// throttled (with Retry-After), 5xx and 408 transient, other 4xx permanent
// (403 names the permission the call needs).
func classify(status int, h http.Header, body []byte, perm string) *actions.Error {
	e := &actions.Error{Status: status, RequestID: h.Get("request-id")}
	var b defError
	if json.Unmarshal(body, &b) == nil {
		e.Code, e.Message = b.Error.Code, b.Error.Message
		if e.RequestID == "" {
			e.RequestID = b.Error.Target
		}
	}
	if len(e.Message) > 1000 {
		e.Message = e.Message[:1000] + "…"
	}
	if ra := h.Get("Retry-After"); ra != "" {
		if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = actions.Throttled
	case status >= 500 || status == http.StatusRequestTimeout:
		e.Class = actions.Transient
	default:
		e.Class = actions.Permanent
	}
	if status == http.StatusForbidden || status == http.StatusUnauthorized {
		e.Permission = perm
	}
	if e.Code == "" {
		e.Code = fmt.Sprintf("HTTP%d", status)
	}
	return e
}

func classifyTransport(err error) *actions.Error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &actions.Error{Class: actions.Transient, Code: "timeout", Message: "the call did not complete in time", Err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF") {
		return &actions.Error{Class: actions.Transient, Message: "network failure", Err: err}
	}
	if strings.Contains(err.Error(), "AADSTS") || strings.Contains(err.Error(), "token for ") {
		return &actions.Error{Class: actions.Permanent, Code: "authentication_failed", Message: firstLine(err.Error())}
	}
	return &actions.Error{Class: actions.Transient, Message: "unexpected failure", Err: err}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
