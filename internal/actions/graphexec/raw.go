package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"

	abs "github.com/microsoft/kiota-abstractions-go"
	khttp "github.com/microsoft/kiota-http-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// calls collects the request ids of each Graph call of one action. Safe for
// concurrent use; the zero value is ready.
type calls struct {
	mu  sync.Mutex
	ids []string
}

func (c *calls) add(id string) {
	if c == nil || id == "" {
		return
	}
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.mu.Unlock()
}

func (c *calls) list() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

func newCalls() *calls { return &calls{} }

func (c *calls) option() (*khttp.HeadersInspectionOptions, func()) {
	o := khttp.NewHeadersInspectionOptions()
	o.InspectResponseHeaders = true
	return o, func() {
		if h := o.GetResponseHeaders(); h != nil {
			if v := h.Get("request-id"); len(v) > 0 {
				c.add(v[0])
			}
		}
	}
}

// seg escapes path segments: ids of Exchange items hold '/', '+' and '='.
func seg(parts ...string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = url.PathEscape(p)
	}
	return strings.Join(out, "/")
}

// query encodes OData query options the way the SDK does: literal '$' in the
// names, %20 for spaces (never '+').
func query(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(kv[i+1]), "+", "%20"))
	}
	return b.String()
}

var errorMapping = abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue}

// raw sends one Graph request through the SDK's request adapter (auth,
// middleware, error mapping) with a JSON body and returns the response body (nil
// for 204). path is relative to the Graph base URL, or absolute (a nextLink).
// opts are added to the request (e.g. noSDKRetry).
func (e *Executor) raw(ctx context.Context, c *calls, method abs.HttpMethod, path, q string, body any, opts ...abs.RequestOption) ([]byte, error) {
	u := path
	if !strings.HasPrefix(path, "https://") && !strings.HasPrefix(path, "http://") {
		u = strings.TrimRight(e.adapter.GetBaseUrl(), "/") + "/" + strings.TrimLeft(path, "/")
		if q != "" {
			u += "?" + q
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("graph url %q: %w", u, err)
	}
	ri := abs.NewRequestInformation()
	ri.Method = method
	ri.SetUri(*pu)
	ri.Headers.Add("Accept", "application/json")
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		ri.SetStreamContentAndContentType(b, "application/json")
	}
	if c == nil {
		c = newCalls()
	}
	opt, done := c.option()
	ri.AddRequestOptions(append([]abs.RequestOption{opt}, opts...))
	res, err := e.adapter.SendPrimitive(ctx, ri, "[]byte", errorMapping)
	done()
	if err != nil {
		return nil, err
	}
	b, _ := res.([]byte)
	return b, nil
}

// page is a Graph collection page.
type page struct {
	Value    []json.RawMessage `json:"value"`
	NextLink string            `json:"@odata.nextLink"`
}

// list reads every page of a collection; before is called before each request
// (to take its budget) and returns a release func.
func (e *Executor) list(ctx context.Context, c *calls, path, q string, perm string, before func(context.Context) (func(), error)) ([]json.RawMessage, error) {
	return listAs[json.RawMessage](ctx, e, c, path, q, perm, before)
}

// listAs is list with the items decoded as T while each page is decoded, in
// one pass (a large page of raw items decoded again one by one costs twice).
func listAs[T any](ctx context.Context, e *Executor, c *calls, path, q string, perm string, before func(context.Context) (func(), error)) ([]T, error) {
	var out []T
	next := path
	for i := 0; next != "" && i < 1000; i++ {
		release, err := before(ctx)
		if err != nil {
			return nil, Classify(err, perm)
		}
		b, err := e.raw(ctx, c, abs.GET, next, q, nil)
		release()
		if err != nil {
			return nil, Classify(err, perm)
		}
		var p struct {
			Value    []T    `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, Classify(fmt.Errorf("decode %s: %w", path, err), perm)
		}
		out = append(out, p.Value...)
		next, q = p.NextLink, ""
	}
	return out, nil
}
