package m365sim

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"
)

// WireEntry is one request as the emulator saw it.
type WireEntry struct {
	Time   time.Time       `json:"time"`
	Method string          `json:"method"`
	Path   string          `json:"path"`  // escaped path as sent
	Query  string          `json:"query"` // raw query as sent
	Body   json.RawMessage `json:"body,omitempty"`
	// BodyText holds a body that is not JSON (e.g. the form-encoded token
	// request, with secrets and assertions redacted).
	BodyText        string `json:"body_text,omitempty"`
	Status          int    `json:"status"` // 0 = connection dropped
	Mailbox         string `json:"mailbox,omitempty"`
	InFlightMailbox int    `json:"in_flight_mailbox,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
	RequestID       string `json:"request_id"`
	// BatchID is the request id of the enclosing $batch for batch items.
	BatchID string `json:"batch_id,omitempty"`
	// AppID is the client id of the calling application (from the token).
	AppID string `json:"app_id,omitempty"`
	// MissingPermission names the permission whose absence caused a 403.
	MissingPermission string `json:"missing_permission,omitempty"`
}

// WireLog returns a copy of every logged request, in completion order.
func (t *Tenant) WireLog() []WireEntry {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return append([]WireEntry(nil), t.wire...)
}

// ResetWireLog empties the wire log.
func (t *Tenant) ResetWireLog() {
	t.wmu.Lock()
	t.wire = nil
	t.wmu.Unlock()
}

const maxWire = 50000

func (t *Tenant) logWire(r *req, start time.Time, status, inflight int) {
	if r.svc == svcAdmin {
		return
	}
	e := WireEntry{Time: start, Method: r.method, Path: r.path, Query: r.rawQuery, Status: status,
		Mailbox: r.mailbox, ClientRequestID: r.clientReqID, RequestID: r.reqID, BatchID: r.batchID,
		MissingPermission: r.missingPerm}
	if r.mailbox != "" {
		e.InFlightMailbox = inflight
	}
	if r.tok != nil {
		e.AppID = r.tok.AppID
	}
	if len(r.body) > 0 {
		if json.Valid(r.body) {
			e.Body = append(json.RawMessage(nil), r.body...)
		} else {
			e.BodyText = redactForm(string(r.body))
		}
	}
	if t.log.Enabled(context.Background(), slog.LevelDebug) {
		t.log.Debug("m365sim: request", "method", e.Method, "path", e.Path, "status", e.Status, "request_id", e.RequestID)
	}
	t.wmu.Lock()
	t.wire = append(t.wire, e)
	if len(t.wire) > maxWire {
		t.wire = append([]WireEntry(nil), t.wire[len(t.wire)-maxWire:]...)
	}
	t.wmu.Unlock()
}

func redactForm(s string) string {
	parts := strings.Split(s, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && (k == "client_secret" || k == "client_assertion" || k == "password") {
			parts[i] = k + "=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}

// mailboxOf names the mailbox an Outlook request targets (the user's object id
// when known), for the per-mailbox concurrency count.
func (t *Tenant) mailboxOf(r *req) string {
	if r.svc != svcExchange || len(r.segs) < 2 {
		return ""
	}
	key := r.segs[1]
	t.mu.RLock()
	defer t.mu.RUnlock()
	if u := t.st.userLocked(key); u != nil {
		return u.ID
	}
	return strings.ToLower(key)
}

func (t *Tenant) enter(mbx string) int {
	if mbx == "" {
		return 0
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.inflight[mbx]++
	return t.inflight[mbx]
}

func (t *Tenant) leave(mbx string) {
	if mbx == "" {
		return
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.inflight[mbx]--
	if t.inflight[mbx] <= 0 {
		delete(t.inflight, mbx)
	}
}

// MaxInFlight returns the highest number of concurrent requests seen for a
// mailbox (by user id or UPN) in the wire log.
func (t *Tenant) MaxInFlight(idOrUPN string) int {
	id := idOrUPN
	if u, ok := t.User(idOrUPN); ok {
		id = u.ID
	}
	max := 0
	for _, e := range t.WireLog() {
		if strings.EqualFold(e.Mailbox, id) && e.InFlightMailbox > max {
			max = e.InFlightMailbox
		}
	}
	return max
}

// ---- faults ----

// Fault is an injected failure. Method "" and PathPrefix "" match every
// resource request (Graph and Management API; the token endpoint only when
// PathPrefix names it, e.g. "/<tenant>/oauth2/").
type Fault struct {
	Method     string        `json:"method,omitempty"`
	PathPrefix string        `json:"path_prefix,omitempty"`
	Status     int           `json:"status,omitempty"`
	Code       string        `json:"code,omitempty"`
	Message    string        `json:"message,omitempty"`
	RetryAfter string        `json:"retry_after,omitempty"` // "" = no header
	Count      int           `json:"count,omitempty"`       // 0 = until removed
	Reset      bool          `json:"reset,omitempty"`       // drop the connection
	Latency    time.Duration `json:"latency,omitempty"`
	Jitter     time.Duration `json:"jitter,omitempty"`
	// Location, with a 3xx Status, makes the fault a redirect there. Not a
	// Microsoft behaviour: a test knob for a redirect to another host (an
	// attacker in the path), which a client must not follow with its token.
	Location string `json:"location,omitempty"`
	// Hold, for in-process tests, keeps each matching request inside the
	// tenant (counted in flight) until it is closed, after telling Arrived
	// (when set) that one more request is held: a test synchronises on
	// these events instead of guessing a latency long enough for requests
	// to overlap. Not a Microsoft behaviour; not settable over /_sim.
	Hold    <-chan struct{} `json:"-"`
	Arrived chan<- struct{} `json:"-"`
}

type faultRec struct {
	Fault
	id   int
	left int
}

// AddFault installs a fault; the returned func removes it.
func (t *Tenant) AddFault(f Fault) (remove func()) {
	id := t.addFault(f)
	return func() { t.removeFault(id) }
}

func (t *Tenant) addFault(f Fault) int {
	t.fmu.Lock()
	defer t.fmu.Unlock()
	t.nextF++
	t.faults = append(t.faults, &faultRec{Fault: f, id: t.nextF, left: f.Count})
	return t.nextF
}

func (t *Tenant) removeFault(id int) bool {
	t.fmu.Lock()
	defer t.fmu.Unlock()
	for i, f := range t.faults {
		if f.id == id {
			t.faults = append(t.faults[:i], t.faults[i+1:]...)
			return true
		}
	}
	return false
}

// ClearFaults removes every fault.
func (t *Tenant) ClearFaults() {
	t.fmu.Lock()
	t.faults = nil
	t.fmu.Unlock()
}

func (t *Tenant) matchFault(r *req) *Fault {
	if r.svc == svcAdmin || r.svc == svcNone {
		return nil
	}
	t.fmu.Lock()
	defer t.fmu.Unlock()
	for i, f := range t.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.method) {
			continue
		}
		if f.PathPrefix == "" {
			if r.svc == svcLogin {
				continue
			}
		} else if !strings.HasPrefix(strings.ToLower(r.path), strings.ToLower(f.PathPrefix)) {
			continue
		}
		out := f.Fault
		if f.Count > 0 {
			f.left--
			if f.left <= 0 {
				t.faults = append(t.faults[:i], t.faults[i+1:]...)
			}
		}
		return &out
	}
	return nil
}

func (t *Tenant) faultResp(r *req, f *Fault) *resp {
	code := f.Code
	if code == "" {
		code = defaultCode(r.svc, f.Status)
	}
	var res *resp
	if r.svc == svcLogin {
		res = t.loginError(r, f.Status, "temporarily_unavailable", 90033, firstNonEmpty(f.Message, "A transient error has occurred. Please try again."))
	} else {
		res = t.errorFor(r, f.Status, code, f.Message)
	}
	if f.RetryAfter != "" {
		res.hdr.Set("Retry-After", f.RetryAfter)
	}
	if f.Location != "" && f.Status >= 300 && f.Status < 400 {
		res.hdr.Set("Location", f.Location)
	}
	return res
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
