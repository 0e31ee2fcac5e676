package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	abs "github.com/microsoft/kiota-abstractions-go"

	"github.com/responder-sec/responder/internal/actions"
)

// MaxBatch is Graph's JSON batching limit.
const MaxBatch = 20

// entraCall is one Entra request that may travel in a $batch.
type entraCall struct {
	kind   string // same-kind calls share a batch ("PATCH user", "POST revoke", …)
	method string
	url    string // relative to the Graph base, starting with '/'
	body   any
	units  float64 // resource units
	writes float64
	perm   string

	done chan struct{}
	res  itemResult
}

type itemResult struct {
	status int
	body   json.RawMessage
	reqID  string
	err    *actions.Error
}

// batcher packs concurrent same-kind Entra calls into one $batch of up to
// MaxBatch requests. It owns no goroutine: the first caller of a new batch leads
// it (waits Linger or until the batch is full, then sends it and hands the
// results out), and the callers that arrive while it is full start the next.
type batcher struct {
	e       *Executor
	linger  time.Duration
	max     int
	retries int

	mu     sync.Mutex
	queues map[string]*batchQueue
}

type batchQueue struct {
	calls []*entraCall
	full  chan struct{}
}

func newBatcher(e *Executor, linger time.Duration, max, retries int) *batcher {
	if max <= 0 || max > MaxBatch {
		max = MaxBatch
	}
	return &batcher{e: e, linger: linger, max: max, retries: retries, queues: map[string]*batchQueue{}}
}

// do runs one call, in a batch when batching is on.
func (b *batcher) do(ctx context.Context, c *calls, call *entraCall) itemResult {
	call.done = make(chan struct{})
	if b.linger < 0 {
		return b.e.single(ctx, c, call, 0, b.retries)
	}
	b.mu.Lock()
	q := b.queues[call.kind]
	lead := q == nil
	if lead {
		q = &batchQueue{full: make(chan struct{})}
		b.queues[call.kind] = q
	}
	q.calls = append(q.calls, call)
	if len(q.calls) >= b.max {
		delete(b.queues, call.kind)
		close(q.full)
	}
	b.mu.Unlock()
	if lead {
		t := time.NewTimer(b.linger)
		select {
		case <-t.C:
		case <-q.full:
		case <-ctx.Done():
		}
		t.Stop()
		b.mu.Lock()
		if b.queues[call.kind] == q {
			delete(b.queues, call.kind)
		}
		batch := q.calls
		b.mu.Unlock()
		// The batch serves other callers too: it runs to completion (bounded by
		// its own timeout) even if the leader's context ends.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		b.send(sctx, c, batch)
		cancel()
	}
	select {
	case <-call.done:
		if call.res.reqID != "" && !lead {
			c.add(call.res.reqID)
		}
		return call.res
	case <-ctx.Done():
		return itemResult{err: Classify(ctx.Err(), call.perm)}
	}
}

type batchReq struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      any               `json:"body,omitempty"`
	DependsOn []string          `json:"dependsOn,omitempty"`
}

type batchResp struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// send posts one $batch and completes every call in it; throttled items are
// retried one by one after their own Retry-After.
func (b *batcher) send(ctx context.Context, c *calls, batch []*entraCall) {
	finish := func(call *entraCall, r itemResult) {
		call.res = r
		close(call.done)
	}
	if len(batch) == 1 {
		finish(batch[0], b.e.single(ctx, c, batch[0], 0, b.retries))
		return
	}
	var units, writes float64
	reqs := make([]batchReq, len(batch))
	for i, call := range batch {
		units += call.units
		writes += call.writes
		reqs[i] = batchReq{ID: strconv.Itoa(i + 1), Method: call.method, URL: call.url}
		if call.body != nil {
			reqs[i].Headers = map[string]string{"Content-Type": "application/json"}
			reqs[i].Body = call.body
		}
	}
	if err := b.e.budgets.Entra(ctx, units, writes); err != nil {
		for _, call := range batch {
			finish(call, itemResult{err: Classify(err, call.perm)})
		}
		return
	}
	out, err := b.e.raw(ctx, c, abs.POST, "$batch", "", map[string]any{"requests": reqs})
	var resp struct {
		Responses []batchResp `json:"responses"`
	}
	if err == nil {
		if derr := json.Unmarshal(out, &resp); derr != nil {
			err = fmt.Errorf("decode $batch response: %w", derr)
		}
	}
	if err != nil {
		for _, call := range batch {
			finish(call, itemResult{err: Classify(err, call.perm)})
		}
		return
	}
	byID := map[string]batchResp{}
	for _, r := range resp.Responses {
		byID[r.ID] = r
	}
	var wg sync.WaitGroup
	for i, call := range batch {
		r, ok := byID[strconv.Itoa(i+1)]
		if !ok {
			finish(call, itemResult{err: &actions.Error{Class: actions.Transient, Code: "MissingBatchResponse", Message: "the $batch response lacks this request"}})
			continue
		}
		res := itemFromBatch(r, call.perm)
		if res.err != nil && res.err.Class == actions.Throttled {
			wg.Add(1)
			go func() { // owned: send waits for it
				defer wg.Done()
				finish(call, b.e.single(ctx, c, call, res.err.RetryAfter, b.retries))
			}()
			continue
		}
		if res.reqID != "" {
			c.add(res.reqID)
		}
		finish(call, res)
	}
	wg.Wait()
}

func header(h map[string]string, k string) string {
	for kk, v := range h {
		if strings.EqualFold(kk, k) {
			return v
		}
	}
	return ""
}

// itemFromBatch classifies one batch item response like a direct response.
func itemFromBatch(r batchResp, perm string) itemResult {
	res := itemResult{status: r.Status, body: r.Body, reqID: header(r.Headers, "request-id")}
	if r.Status < 400 {
		return res
	}
	e := &actions.Error{Status: r.Status, RequestID: res.reqID, ClientRequestID: header(r.Headers, "client-request-id")}
	var env struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				RequestID       string `json:"request-id"`
				ClientRequestID string `json:"client-request-id"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if json.Unmarshal(r.Body, &env) == nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
		if e.RequestID == "" {
			e.RequestID = env.Error.InnerError.RequestID
		}
		if e.ClientRequestID == "" {
			e.ClientRequestID = env.Error.InnerError.ClientRequestID
		}
	}
	if ra := header(r.Headers, "Retry-After"); ra != "" {
		e.RetryAfter = parseRetryAfter(ra)
	}
	classifyStatus(e, perm)
	res.err = e
	return res
}

func parseRetryAfter(ra string) time.Duration {
	if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(ra); err == nil {
		return time.Until(t)
	}
	return 0
}

// single sends one call on its own, first waiting wait (a throttled item's
// Retry-After), retrying a throttled answer up to retries times after its own
// delay (or a jittered backoff when Microsoft sent none).
func (e *Executor) single(ctx context.Context, c *calls, call *entraCall, wait time.Duration, retries int) itemResult {
	var last itemResult
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 || wait > 0 {
			d := wait
			if d <= 0 {
				d = actions.Backoff(&actions.Error{}, attempt, 500*time.Millisecond, 10*time.Second, jitter)
			}
			if d > e.cfg.MaxItemWait {
				d = e.cfg.MaxItemWait
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return itemResult{err: Classify(ctx.Err(), call.perm)}
			}
		}
		if err := e.budgets.Entra(ctx, call.units, call.writes); err != nil {
			return itemResult{err: Classify(err, call.perm)}
		}
		method := map[string]abs.HttpMethod{"GET": abs.GET, "POST": abs.POST, "PATCH": abs.PATCH, "DELETE": abs.DELETE}[call.method]
		path, q, _ := strings.Cut(call.url, "?")
		out, err := e.raw(ctx, c, method, path, q, call.body)
		if err == nil {
			return itemResult{status: 200, body: out}
		}
		ce := Classify(err, call.perm)
		last = itemResult{status: ce.Status, err: ce}
		if ce.Class != actions.Throttled {
			return last
		}
		wait = ce.RetryAfter
	}
	return last
}
