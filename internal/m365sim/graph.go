package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

type throttleClass int

const (
	thrNone throttleClass = iota
	thrEntra
	thrOutlook
	thrIdPCA
	thrReports
)

type route struct {
	method  string
	pattern string // e.g. "users/{}/revokeSignInSessions"
	perm    perm
	class   throttleClass
	h       func(t *Tenant, r *req, p []string) *resp
}

func graphRoutes() []route {
	var rs []route
	rs = append(rs, userRoutes()...)
	rs = append(rs, riskRoutes()...)
	rs = append(rs, alertRoutes()...)
	rs = append(rs, moreRoutes()...)
	rs = append(rs, roleAssignmentRoutes()...)
	return rs
}

// matchRoute finds the route for the segments; methodOK reports whether the
// path matched with some other method.
func matchRoute(rs []route, method string, segs []string) (*route, []string, bool) {
	pathMatched := false
	for i := range rs {
		// Walked segment by segment (no split per route and request).
		rest := rs[i].pattern
		if strings.Count(rest, "/")+1 != len(segs) {
			continue
		}
		var params []string
		ok := true
		for j := range segs {
			var p string
			p, rest, _ = strings.Cut(rest, "/")
			s := segs[j]
			if p == "{}" {
				params = append(params, s)
				continue
			}
			s = strings.TrimPrefix(s, "microsoft.graph.")
			if !strings.EqualFold(p, s) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		pathMatched = true
		if rs[i].method == method {
			return &rs[i], params, true
		}
	}
	return nil, nil, pathMatched
}

func (t *Tenant) graph(r *req, inflight int) *resp {
	if len(r.segs) == 0 {
		return t.graphError(r, http.StatusBadRequest, "BadRequest", "Invalid version.")
	}
	if a := t.authenticate(r, graphResource); a != nil {
		return a
	}
	if len(r.segs) == 1 && r.segs[0] == "$batch" {
		if r.method != http.MethodPost {
			return t.graphError(r, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
		}
		return t.batch(r)
	}
	return t.graphResource(r, inflight)
}

// graphResource runs one authenticated Graph call (directly or as a $batch item).
func (t *Tenant) graphResource(r *req, inflight int) *resp {
	rt, params, pathOK := matchRoute(t.routes(), r.method, r.segs)
	if rt == nil {
		if pathOK {
			return t.graphError(r, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
		}
		seg := r.segs[len(r.segs)-1]
		return t.graphError(r, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
	}
	if m := rt.perm.missing(r.tok.Roles); m != "" {
		return t.forbidden(r, m)
	}
	if res := t.throttle(r, rt.class, inflight); res != nil {
		return res
	}
	res := rt.h(t, r, params)
	if rt.class == thrEntra && res.status < 400 {
		t.thr.annotateEntra(r, res)
	}
	return res
}

func (t *Tenant) routes() []route {
	t.routesOnce.Do(func() { t.routeTable = graphRoutes() })
	return t.routeTable
}

// readBody decodes a JSON object body.
func (t *Tenant) readBody(r *req) (map[string]any, *resp) {
	if len(r.body) == 0 {
		return nil, t.graphError(r, http.StatusBadRequest, "BadRequest", "Empty Payload. JSON content expected.")
	}
	m := decodeObj(r.body)
	if m == nil {
		if r.svc == svcExchange {
			return nil, t.graphError(r, http.StatusBadRequest, "RequestBodyRead", "Invalid JSON. A token was not recognized in the JSON content.")
		}
		return nil, t.graphError(r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
	}
	return m, nil
}

// listing serves a collection with $filter, $select, $top and $skiptoken (or $skip).
type listing struct {
	context  string // @odata.context suffix after $metadata#
	defTop   int
	maxTop   int
	useSkip  bool // Outlook uses $skip instead of $skiptoken
	entity   string
	topError func(r *req, top string) *resp
	// schema, when set, refuses a $filter or $select Graph would refuse
	// (schema.go).
	schema *schema
}

func (t *Tenant) list(r *req, items []*item, l listing) *resp {
	if res := t.checkQuery(r, l.schema); res != nil {
		return res
	}
	var fnode filterNode
	if f := r.q("$filter"); f != "" {
		n, err := parseFilter(f)
		if err != nil {
			return t.badFilter(r, err.Error())
		}
		fnode = n
	}
	top := l.defTop
	if s := r.q("$top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || (l.maxTop > 0 && n > l.maxTop) {
			if l.topError != nil {
				return l.topError(r, s)
			}
			return t.graphError(r, http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and %d inclusive.", s, l.maxTop))
		}
		top = n
	}
	snap := t.now()
	off := 0
	if l.useSkip {
		if s := r.q("$skip"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return t.graphError(r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "The value specified for the $skip query parameter is invalid.")
			}
			off = n
		}
	} else if s := r.q("$skiptoken"); s != "" {
		p, ok := decodeSkip(s)
		if !ok {
			return t.graphError(r, http.StatusBadRequest, "Request_BadRequest", "The specified page token value has expired and can no longer be included in your request.")
		}
		off = p.Off
		snap = unixNano(p.Snap)
	}
	var matched []map[string]any
	for _, it := range items {
		if !it.visible.IsZero() && it.visible.After(snap) {
			continue
		}
		ok, err := matches(fnode, it.obj)
		if err != nil {
			return t.badFilter(r, err.Error())
		}
		if ok {
			matched = append(matched, it.obj)
		}
	}
	out := map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#" + l.context}
	end := off + top
	if off > len(matched) {
		off = len(matched)
	}
	if end > len(matched) {
		end = len(matched)
	}
	page := make([]map[string]any, 0, end-off)
	sel := r.q("$select")
	for _, o := range matched[off:end] {
		page = append(page, selectProps(o, sel))
	}
	if end < len(matched) {
		if l.useSkip {
			out["@odata.nextLink"] = t.nextLink(r, "%24skip", strconv.Itoa(end))
		} else {
			out["@odata.nextLink"] = t.nextLink(r, "$skiptoken", encodeSkip(pageToken{Off: end, Snap: snap.UnixNano()}))
		}
	}
	out["value"] = page
	return jsonResp(http.StatusOK, out)
}

func (t *Tenant) badFilter(r *req, msg string) *resp {
	switch r.svc {
	case svcExchange:
		return t.graphError(r, http.StatusBadRequest, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
	case svcEntra:
		if strings.HasPrefix(msg, "Unsupported") {
			return t.graphError(r, http.StatusBadRequest, "Request_UnsupportedQuery", msg)
		}
	}
	return t.graphError(r, http.StatusBadRequest, "BadRequest", msg)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}
