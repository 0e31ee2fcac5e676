package m365sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MaxBatchRequests is Graph's JSON batching limit.
const MaxBatchRequests = 20

type batchItem struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

func (t *Tenant) batch(r *req) *resp {
	var in struct {
		Requests []batchItem `json:"requests"`
	}
	if len(r.body) == 0 || json.Unmarshal(r.body, &in) != nil {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
	}
	if len(in.Requests) == 0 {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
	}
	if len(in.Requests) > MaxBatchRequests {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The number of requests in the batch (%d) exceeds the limit of %d.", len(in.Requests), MaxBatchRequests))
	}
	ids := map[string]int{}
	for i, it := range in.Requests {
		k := strings.ToLower(it.ID)
		if k == "" {
			return t.graphError(r, http.StatusBadRequest, "BadRequest", "Batch request id is required.")
		}
		if _, dup := ids[k]; dup {
			return t.graphError(r, http.StatusBadRequest, "BadRequest", "Batch request contains duplicate request ids: '"+it.ID+"'.")
		}
		ids[k] = i
		if it.Method == "" || it.URL == "" {
			return t.graphError(r, http.StatusBadRequest, "BadRequest", "Batch request "+it.ID+" must have a method and a url.")
		}
	}
	for _, it := range in.Requests {
		for _, d := range it.DependsOn {
			if _, ok := ids[strings.ToLower(d)]; !ok {
				return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Request dependency '%s' of request '%s' was not found in the batch.", d, it.ID))
			}
		}
	}
	// Graph runs the steps of a batch that do not depend on each other in
	// parallel, in no set order: the emulator runs them in waves, every step
	// whose dependencies are done at once (each with its own latency), and
	// answers in request order within a wave.
	status := make([]int, len(in.Requests))
	done := make([]bool, len(in.Requests))
	var out []map[string]any
	for remaining := len(in.Requests); remaining > 0; {
		var wave []int
		for i, it := range in.Requests {
			if done[i] {
				continue
			}
			ready := true
			for _, d := range it.DependsOn {
				if !done[ids[strings.ToLower(d)]] {
					ready = false
				}
			}
			if ready {
				wave = append(wave, i)
			}
		}
		if len(wave) == 0 { // cycle: fail the rest
			for i, it := range in.Requests {
				if !done[i] {
					done[i] = true
					status[i] = http.StatusFailedDependency
					out = append(out, failedDep(it.ID))
				}
			}
			break
		}
		results := make([]*resp, len(wave))
		var wg sync.WaitGroup
		for k, pick := range wave {
			it := in.Requests[pick]
			failed := false
			for _, d := range it.DependsOn {
				if status[ids[strings.ToLower(d)]] >= 400 {
					failed = true
				}
			}
			if failed {
				t.logWire(&req{method: strings.ToUpper(it.Method), path: it.URL, reqID: newGUID(), clientReqID: r.clientReqID, batchID: r.reqID, tok: r.tok, svc: svcGraph},
					t.now(), http.StatusFailedDependency, 0)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[k] = t.batchOne(r, it)
			}()
		}
		wg.Wait()
		for k, pick := range wave {
			done[pick] = true
			remaining--
			it := in.Requests[pick]
			if results[k] == nil {
				status[pick] = http.StatusFailedDependency
				out = append(out, failedDep(it.ID))
				continue
			}
			status[pick] = results[k].status
			out = append(out, batchResp(it.ID, results[k]))
		}
	}
	return jsonResp(http.StatusOK, map[string]any{"responses": out})
}

func failedDep(id string) map[string]any {
	return map[string]any{"id": id, "status": http.StatusFailedDependency,
		"headers": map[string]string{"Content-Type": "application/json"},
		"body": map[string]any{"error": map[string]any{"code": "FailedDependency",
			"message": "The request could not be processed because a request it depends on failed."}}}
}

func batchResp(id string, res *resp) map[string]any {
	h := map[string]string{}
	for k, v := range res.hdr {
		if len(v) == 0 {
			continue
		}
		switch http.CanonicalHeaderKey(k) {
		case "Content-Type":
			h["Content-Type"] = v[0] // the Go SDK reads exactly this key
		default:
			h[http.CanonicalHeaderKey(k)] = v[0]
		}
	}
	o := map[string]any{"id": id, "status": res.status, "headers": h}
	if len(res.body) > 0 {
		if m := decodeObj(res.body); m != nil {
			o["body"] = m
		} else {
			o["body"] = base64.StdEncoding.EncodeToString(res.body)
		}
	}
	return o
}

// batchOne runs one batch step through the same pipeline as a direct call.
func (t *Tenant) batchOne(outer *req, it batchItem) *resp {
	start := t.now()
	ir := &req{method: strings.ToUpper(it.Method), hdr: http.Header{}, reqID: newGUID(), clientReqID: outer.clientReqID,
		tok: outer.tok, batchID: outer.reqID, svc: svcGraph}
	for k, v := range it.Headers {
		ir.hdr.Set(k, v)
	}
	bad := func(msg string) *resp {
		res := t.graphError(ir, http.StatusBadRequest, "BadRequest", msg)
		t.logWire(ir, start, res.status, 0)
		return res
	}
	if strings.Contains(it.URL, "://") {
		ir.path = it.URL
		return bad("The batch step url must be relative to the service root (e.g. '/users').")
	}
	u, err := url.Parse("/" + strings.TrimLeft(it.URL, "/"))
	if err != nil {
		ir.path = it.URL
		return bad("Invalid request URL.")
	}
	esc := u.EscapedPath()
	if low := strings.ToLower(esc); strings.HasPrefix(low, "/v1.0/") {
		esc = esc[len("/v1.0"):]
	}
	ir.path = "/v1.0" + esc
	ir.query, ir.rawQuery = u.Query(), u.RawQuery
	segs, err := splitPath(esc)
	if err != nil || len(segs) == 0 {
		return bad("Invalid request URL.")
	}
	ir.segs = segs
	ir.svc = graphService(segs)
	if b := strings.TrimSpace(string(it.Body)); b != "" && b != "null" {
		if ir.hdr.Get("Content-Type") == "" {
			return bad("Content-Type header must be specified for a batch step that has a body.")
		}
		if strings.HasPrefix(b, `"`) {
			var s string
			_ = json.Unmarshal(it.Body, &s)
			dec, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return bad("The batch step body is neither a JSON object nor base64.")
			}
			ir.body = dec
		} else {
			ir.body = []byte(b)
		}
	}
	ir.mailbox = t.mailboxOf(ir)
	inflight := t.enter(ir.mailbox)
	defer t.leave(ir.mailbox)
	var res *resp
	if f := t.matchFault(ir); f != nil {
		t.sleep(f.Latency + f.Jitter/2)
		switch {
		case f.Status != 0:
			res = t.faultResp(ir, f)
		case f.Reset:
			res = t.graphError(ir, http.StatusGatewayTimeout, "GatewayTimeout", "The upstream connection was reset.")
		}
	}
	if res == nil {
		if ir.segs[0] == "$batch" {
			res = t.graphError(ir, http.StatusBadRequest, "BadRequest", "Nested batch requests are not supported.")
		} else {
			res = t.graphResource(ir, inflight)
		}
	}
	t.logWire(ir, start, res.status, inflight)
	return res
}

func (t *Tenant) sleep(d time.Duration) {
	t.waitLatency(nil, d) // latency.go
}
