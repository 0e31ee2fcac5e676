package m365sim

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const maxBody = 8 << 20

// service names the Microsoft service that owns a route; it decides the error
// body, the 403 wording and the throttling budget.
type service int

const (
	svcNone     service = iota
	svcLogin            // Entra ID token service
	svcEntra            // Graph directory (users, domains, roles)
	svcExchange         // Graph Outlook resources (mail, rules)
	svcIdP              // Graph Identity Protection
	svcCA               // Graph Conditional Access
	svcReports          // Graph sign-in reports
	svcGraph            // Graph itself ($batch, unknown segments)
	svcManage           // Office 365 Management Activity API
	svcAdmin            // emulator admin API
	svcExoAdmin         // Exchange Online admin API (adminapi/beta InvokeCommand)
	svcDefender         // Microsoft Defender for Endpoint API (/api/…, defender.go)
)

// req is one request to a resource, decoupled from net/http so that $batch
// items go through exactly the same code.
type req struct {
	method      string
	path        string   // escaped path as sent (for the wire log)
	segs        []string // unescaped segments after the service prefix
	query       url.Values
	rawQuery    string
	body        []byte
	hdr         http.Header
	reqID       string
	clientReqID string
	tok         *claims
	svc         service
	mailbox     string
	batchID     string
	missingPerm string
}

type resp struct {
	status int
	hdr    http.Header
	body   []byte
}

func newResp(status int) *resp { return &resp{status: status, hdr: http.Header{}} }

func (r *req) q(name string) string {
	// OData system query options arrive as "$top" or "%24top" (both decode to
	// "$top"); Microsoft treats their names case-insensitively.
	if v, ok := r.query[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range r.query {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (r *req) has(name string) bool {
	for k := range r.query {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// splitPath splits the escaped path and unescapes each segment, so that an id
// holding %2F stays one segment (r.URL.Path would split it).
func splitPath(escaped string) ([]string, error) {
	escaped = strings.Trim(escaped, "/")
	if escaped == "" {
		return nil, nil
	}
	parts := strings.Split(escaped, "/")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("bad path segment %q: %w", p, err)
		}
		out = append(out, u)
	}
	return out, nil
}

func (t *Tenant) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	t.handlers.Add(1)
	defer t.handlers.Done()
	t.busy.Add(1)
	defer t.busy.Add(-1)
	start := t.now()
	r := &req{
		method:   hr.Method,
		path:     hr.URL.EscapedPath(),
		query:    hr.URL.Query(),
		rawQuery: hr.URL.RawQuery,
		hdr:      hr.Header,
		reqID:    newGUID(),
	}
	r.clientReqID = hr.Header.Get("client-request-id")
	segs, perr := splitPath(r.path)
	r.svc, r.segs = classify(segs, t.opts.TenantID)

	// Body: read (bounded) and gunzip, as Graph does for Content-Encoding: gzip.
	var res *resp
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxBody+1))
	switch {
	case err != nil:
		res = t.errorFor(r, http.StatusBadRequest, "BadRequest", "The request body could not be read.")
	case len(body) > maxBody:
		res = t.errorFor(r, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is too large.")
	case strings.EqualFold(strings.TrimSpace(hr.Header.Get("Content-Encoding")), "gzip") && len(body) > 0:
		zr, zerr := gzip.NewReader(bytes.NewReader(body))
		if zerr == nil {
			body, zerr = io.ReadAll(io.LimitReader(zr, maxBody+1))
		}
		if zerr != nil {
			res = t.errorFor(r, http.StatusBadRequest, "BadRequest", "The request body could not be decompressed.")
		}
		r.body = body
	default:
		r.body = body
	}
	if perr != nil && res == nil {
		res = t.errorFor(r, http.StatusBadRequest, "BadRequest", "Invalid request URL.")
	}
	if r.clientReqID == "" && (r.svc != svcManage) {
		r.clientReqID = r.reqID
	}
	r.mailbox = t.mailboxOf(r)
	inflight := t.enter(r.mailbox)
	defer t.leave(r.mailbox)

	if res == nil {
		if f := t.matchFault(r); f != nil {
			if !t.delay(hr, f.Latency, f.Jitter) || !t.hold(hr, f.Hold, f.Arrived) {
				// Client gone or tenant closing: drop the connection rather
				// than let net/http answer 200 with an empty body.
				t.logWire(r, start, 0, inflight)
				panic(http.ErrAbortHandler)
			}
			if f.Reset {
				t.logWire(r, start, 0, inflight)
				panic(http.ErrAbortHandler) // drops the connection / resets the stream
			}
			if f.Status != 0 {
				res = t.faultResp(r, f)
			}
		}
	}
	if res == nil {
		res = t.handle(r, inflight)
	}
	t.writeResp(w, r, res)
	t.logWire(r, start, res.status, inflight)
}

// classify maps the first path segments to a service and strips the prefix.
func classify(segs []string, tenant string) (service, []string) {
	switch {
	case len(segs) == 0:
		return svcNone, segs
	case segs[0] == "_sim":
		return svcAdmin, segs[1:]
	case strings.EqualFold(segs[0], "v1.0"):
		if len(segs) == 1 {
			return svcGraph, segs[1:]
		}
		return graphService(segs[1:]), segs[1:]
	case segs[0] == "api" && len(segs) >= 2 && (segs[1] == "v1.0" || segs[1] == "v1"):
		return svcManage, segs[2:]
	case segs[0] == "api" && len(segs) >= 2:
		return svcDefender, segs[1:]
	case strings.EqualFold(segs[0], "adminapi"):
		return svcExoAdmin, segs[1:]
	case len(segs) >= 2 && (strings.EqualFold(segs[1], "v2.0") || strings.EqualFold(segs[1], "oauth2") || strings.EqualFold(segs[1], "discovery")):
		return svcLogin, segs
	}
	return svcNone, segs
}

func graphService(s []string) service {
	first := strings.ToLower(s[0])
	switch first {
	case "users":
		if len(s) >= 3 {
			switch strings.ToLower(s[2]) {
			case "messages", "mailfolders", "mailboxsettings":
				return svcExchange
			}
		}
		return svcEntra
	case "identityprotection":
		return svcIdP
	case "identity":
		return svcCA
	case "auditlogs":
		return svcReports
	case "$batch":
		return svcGraph
	}
	return svcEntra
}

func (t *Tenant) handle(r *req, inflight int) *resp {
	switch r.svc {
	case svcAdmin:
		return t.admin(r)
	case svcLogin:
		return t.login(r)
	case svcManage:
		return t.manage(r)
	case svcExoAdmin:
		return t.exoAdmin(r)
	case svcDefender:
		return t.defenderAPI(r)
	case svcNone:
		res := newResp(http.StatusNotFound)
		res.hdr.Set("Content-Type", "text/html")
		res.body = []byte("<h1>404 Not Found</h1>")
		return res
	}
	return t.graph(r, inflight)
}

func (t *Tenant) writeResp(w http.ResponseWriter, r *req, res *resp) {
	h := w.Header()
	for k, v := range res.hdr {
		h[k] = v
	}
	switch r.svc {
	case svcEntra, svcExchange, svcIdP, svcCA, svcReports, svcGraph:
		h.Set("request-id", r.reqID)
		h.Set("client-request-id", r.clientReqID)
		h.Set("x-ms-ags-diagnostic", `{"ServerInfo":{"DataCenter":"Loopback","Slice":"E","Ring":"0","ScaleUnit":"000","RoleInstance":"m365sim"}}`)
		h.Set("Strict-Transport-Security", "max-age=31536000")
		if h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", "no-cache")
		}
	case svcLogin:
		h.Set("x-ms-request-id", r.reqID)
		h.Set("Cache-Control", "no-store, no-cache")
		h.Set("Pragma", "no-cache")
	case svcManage, svcDefender:
		h.Set("request-id", r.reqID)
	case svcExoAdmin:
		h.Set("request-id", r.reqID)
		h.Set("client-request-id", r.clientReqID)
		h.Set("X-CalculatedBETarget", "AM0PR10MB2387.EURPRD10.PROD.OUTLOOK.COM")
	}
	if len(res.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	status := res.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if len(res.body) > 0 && r.method != http.MethodHead {
		_, _ = w.Write(res.body)
	}
}

// delay sleeps for a fault's latency, returning false if the client or the
// tenant went away first.
// hold waits until release is closed (nil: no wait), telling arrived first;
// false when the client went away or the tenant is closing.
func (t *Tenant) hold(hr *http.Request, release <-chan struct{}, arrived chan<- struct{}) bool {
	if release == nil {
		return true
	}
	if arrived != nil {
		select {
		case arrived <- struct{}{}:
		case <-hr.Context().Done():
			return false
		case <-t.done:
			return false
		}
	}
	select {
	case <-release:
		return true
	case <-hr.Context().Done():
		return false
	case <-t.done:
		return false
	}
}

func (t *Tenant) delay(hr *http.Request, lat, jitter time.Duration) bool {
	d := lat
	if jitter > 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		n := int64(0)
		for _, x := range b {
			n = n<<8 | int64(x)
		}
		if n < 0 {
			n = -n
		}
		d += time.Duration(n % int64(jitter))
	}
	return t.waitLatency(hr.Context().Done(), d) // latency.go
}

// ---- JSON helpers ----

func jsonResp(status int, v any) *resp {
	res := newResp(status)
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{}`)
	}
	res.body = b
	res.hdr.Set("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8")
	return res
}

func noContent() *resp { return newResp(http.StatusNoContent) }

// graphTime formats a DateTimeOffset the way Graph does (UTC, Z).
func graphTime(tm time.Time) string {
	if tm.IsZero() {
		return ""
	}
	return tm.UTC().Format("2006-01-02T15:04:05.9999999Z")
}

// ---- errors per service ----

var defaultMessages = map[string]string{
	"Authorization_RequestDenied": "Insufficient privileges to complete the operation.",
	"Request_BadRequest":          "Invalid request.",
	"TooManyRequests":             "Please retry again later.",
	"ErrorAccessDenied":           "Access is denied. Check credentials and try again.",
	"ErrorItemNotFound":           "The specified object was not found in the store.",
	"ApplicationThrottled":        "Application is over its MailboxConcurrency limit.",
	"AccessDenied":                "You cannot perform the requested operation, required scopes are missing in the token.",
	"InvalidAuthenticationToken":  "Access token has expired or is not yet valid.",
	"generalException":            "General exception while processing.",
	"serviceNotAvailable":         "Service unavailable.",
	"UnknownError":                "",
	"AF50000":                     "An internal server error occurred. Retry the request.",
	"AF429":                       "Too many requests. Method=ListContent, PublisherId=00000000-0000-0000-0000-000000000000",
}

func defaultCode(svc service, status int) string {
	if svc == svcExoAdmin {
		switch status {
		case 400:
			return "BadRequest"
		case 401:
			return "Unauthorized"
		case 403:
			return "Forbidden"
		case 404:
			return "NotFound"
		case 429:
			return "TooManyRequests"
		case 500:
			return "InternalServerError"
		case 503:
			return "ServiceUnavailable"
		}
	}
	switch status {
	case 400:
		if svc == svcManage {
			return "AF20001"
		}
		return "BadRequest"
	case 401:
		if svc == svcManage {
			return "AF10001"
		}
		return "InvalidAuthenticationToken"
	case 403:
		switch svc {
		case svcManage:
			return "AF10001"
		case svcExchange:
			return "ErrorAccessDenied"
		case svcCA:
			return "AccessDenied"
		}
		return "Authorization_RequestDenied"
	case 404:
		switch svc {
		case svcExchange:
			return "ErrorItemNotFound"
		case svcManage:
			return "AF20050"
		}
		return "Request_ResourceNotFound"
	case 429:
		switch svc {
		case svcManage:
			return "AF429"
		case svcExchange:
			return "ApplicationThrottled"
		}
		return "TooManyRequests"
	case 500:
		if svc == svcManage {
			return "AF50000"
		}
		return "generalException"
	case 503:
		if svc == svcManage {
			return "AF50000"
		}
		return "serviceNotAvailable"
	case 504:
		if svc == svcManage {
			return "AF50000"
		}
		return "GatewayTimeout"
	}
	return "UnknownError"
}

// graphError is Graph's OData error envelope with innerError.
func (t *Tenant) graphError(r *req, status int, code, msg string) *resp {
	if msg == "" {
		msg = defaultMessages[code]
	}
	inner := map[string]any{
		"date":              t.now().Format("2006-01-02T15:04:05"),
		"request-id":        r.reqID,
		"client-request-id": r.clientReqID,
	}
	if code == "TooManyRequests" {
		inner = map[string]any{"code": "429", "date": t.now().Format("2006-01-02T15:04:05"), "message": "Please retry after",
			"request-id": r.reqID, "client-request-id": r.clientReqID, "status": "429"}
	}
	res := newResp(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg, "innerError": inner}})
	res.body = b
	res.hdr.Set("Content-Type", "application/json")
	return res
}

// manageError is the Management Activity API envelope (no innerError).
func manageError(status int, code, msg string) *resp {
	if msg == "" {
		msg = defaultMessages[code]
	}
	if msg == "" {
		msg = "An error occurred."
	}
	res := newResp(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg}})
	res.body = b
	res.hdr.Set("Content-Type", "application/json; charset=utf-8")
	return res
}

// loginError is the Entra ID OAuth error body.
func (t *Tenant) loginError(r *req, status int, oauthErr string, aadsts int, desc string) *resp {
	now := t.now()
	full := fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, desc, r.reqID, newGUID(), now.Format("2006-01-02 15:04:05Z"))
	res := newResp(status)
	b, _ := json.Marshal(map[string]any{
		"error": oauthErr, "error_description": full, "error_codes": []int{aadsts},
		"timestamp": now.Format("2006-01-02 15:04:05Z"), "trace_id": r.reqID, "correlation_id": newGUID(),
		"error_uri": fmt.Sprintf("%s/error?code=%d", t.base, aadsts),
	})
	res.body = b
	res.hdr.Set("Content-Type", "application/json; charset=utf-8")
	return res
}

// errorFor writes an error in the body shape of the request's service.
func (t *Tenant) errorFor(r *req, status int, code, msg string) *resp {
	switch r.svc {
	case svcManage:
		if code == "" || !strings.HasPrefix(code, "AF") {
			code = defaultCode(svcManage, status)
		}
		return manageError(status, code, msg)
	case svcLogin:
		return t.loginError(r, status, "invalid_request", 900144, msg)
	case svcExoAdmin:
		if code == "" {
			code = defaultCode(svcExoAdmin, status)
		}
		return t.exoError(r, status, code, msg, "")
	case svcAdmin, svcNone:
		res := newResp(status)
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg}})
		res.body = b
		res.hdr.Set("Content-Type", "application/json")
		return res
	}
	if code == "" {
		code = defaultCode(r.svc, status)
	}
	return t.graphError(r, status, code, msg)
}

// handlersBusy reports whether a request handler is running (for tests).
func (t *Tenant) handlersBusy() bool { return t.busy.Load() > 0 }
