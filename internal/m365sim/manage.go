package m365sim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// Content types of the Management Activity API.
var contentTypes = []string{"Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"}

type subscription struct {
	ContentType string         `json:"contentType"`
	Status      string         `json:"status"`
	Webhook     map[string]any `json:"webhook"`
	started     time.Time
	// See manage_subs.go: when starts were accepted, the enabled periods
	// (content created outside them is never listed) and the listings still
	// to answer AF20023 after the last start.
	lastStart time.Time
	spans     []span
	settle    int
}

type blob struct {
	id          string
	contentType string
	created     time.Time // contentCreated = when it became available
	// listed is when listings start to return it (zero: at created); Microsoft
	// lists some content well after its contentCreated.
	listed  time.Time
	records []json.RawMessage
	raw     []byte // served verbatim when set
	// gen, when set, makes the n records on each GET instead of keeping them.
	gen func(dst []byte, i int) []byte
	n   int
}

// listedAt is when the blob appears in listings.
func (b *blob) listedAt() time.Time {
	if b.listed.After(b.created) {
		return b.listed
	}
	return b.created
}

func (b *blob) body() []byte {
	if b.gen != nil {
		out := append(make([]byte, 0, 64+b.n*512), '[')
		for i := range b.n {
			if i > 0 {
				out = append(out, ',')
			}
			out = b.gen(out, i)
		}
		return append(out, ']')
	}
	if b.raw != nil {
		return b.raw
	}
	out, err := json.Marshal(b.records)
	if err != nil {
		return []byte("[]")
	}
	return out
}

// recordList returns the blob's records (generated ones made now).
func (b *blob) recordList() []json.RawMessage {
	if b.gen == nil {
		return b.records
	}
	out := make([]json.RawMessage, 0, b.n)
	for i := range b.n {
		out = append(out, json.RawMessage(b.gen(nil, i)))
	}
	return out
}

func canonContentType(s string) (string, bool) {
	for _, c := range contentTypes {
		if strings.EqualFold(c, s) {
			return c, true
		}
	}
	return "", false
}

// AuditRecordTime formats CreationTime the Management Activity way: UTC, no zone.
func AuditRecordTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// baseRecord is the common schema of a Management Activity record.
func (t *Tenant) baseRecord(at time.Time, recordType int, op, userID, workload, result string) map[string]any {
	if at.IsZero() {
		at = t.now()
	}
	return map[string]any{
		"CreationTime": AuditRecordTime(at), "Id": newGUID(), "Operation": op, "OrganizationId": t.opts.TenantID,
		"RecordType": recordType, "ResultStatus": result, "UserKey": userID, "UserType": 0, "Version": 1,
		"Workload": workload, "UserId": userID,
	}
}

// addRecordsLocked puts records into a new content blob that becomes available at visible.
func (t *Tenant) addRecordsLocked(contentType string, visible time.Time, recs ...map[string]any) string {
	b := &blob{contentType: contentType, created: visible}
	for _, r := range recs {
		b.records = append(b.records, mustJSON(r))
	}
	return t.addBlobLocked(b)
}

func (t *Tenant) addBlobLocked(b *blob) string {
	n := t.st.nextSeq()
	slug := strings.ToLower(strings.ReplaceAll(b.contentType, ".", "_"))
	b.id = fmt.Sprintf("%s%06d$%s%06d$%s$%s$emea0026", b.created.UTC().Format("20060102150405"), n,
		b.created.UTC().Format("20060102150405"), n, slug, strings.ReplaceAll(b.contentType, ".", "_"))
	t.st.blobs = append(t.st.blobs, b)
	return b.id
}

// AddAuditRecords adds raw audit records (JSON objects) to a new content blob of
// contentType, available after AvailabilityDelay. It returns the content id.
func (t *Tenant) AddAuditRecords(contentType string, records []json.RawMessage) (string, error) {
	ct, ok := canonContentType(contentType)
	if !ok {
		return "", fmt.Errorf("m365sim: invalid content type %q", contentType)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &blob{contentType: ct, created: t.now().Add(t.opts.AvailabilityDelay)}
	for _, r := range records {
		b.records = append(b.records, append(json.RawMessage(nil), r...))
	}
	return t.addBlobLocked(b), nil
}

// AddAuditBlob stores a content blob exactly as given (a JSON array), available
// after AvailabilityDelay; GET of its contentUri returns these bytes.
func (t *Tenant) AddAuditBlob(contentType string, raw []byte) (string, error) {
	ct, ok := canonContentType(contentType)
	if !ok {
		return "", fmt.Errorf("m365sim: invalid content type %q", contentType)
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		return "", fmt.Errorf("m365sim: a content blob must be a JSON array: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addBlobLocked(&blob{contentType: ct, created: t.now().Add(t.opts.AvailabilityDelay), raw: append([]byte(nil), raw...), records: arr}), nil
}

// AddLateAuditRecords adds raw audit records to a new content blob of
// contentType whose contentCreated is created (it may be in the past) but
// which listings return only from listed on, as Microsoft sometimes lists
// content late: a poller must re-list behind its cursor to find it.
func (t *Tenant) AddLateAuditRecords(contentType string, records []json.RawMessage, created, listed time.Time) (string, error) {
	ct, ok := canonContentType(contentType)
	if !ok {
		return "", fmt.Errorf("m365sim: invalid content type %q", contentType)
	}
	b := &blob{contentType: ct, created: created.UTC(), listed: listed.UTC()}
	for _, r := range records {
		b.records = append(b.records, append(json.RawMessage(nil), r...))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addBlobLocked(b), nil
}

// AddGeneratedAuditBlob adds a content blob of contentType with n records,
// available after AvailabilityDelay, that are made by gen (which appends
// record i to dst) each time the blob is read instead of being kept: large
// seeds cost no memory until a blob is fetched. gen must return the same
// record for the same i and be safe for concurrent use.
func (t *Tenant) AddGeneratedAuditBlob(contentType string, n int, gen func(dst []byte, i int) []byte) (string, error) {
	ct, ok := canonContentType(contentType)
	if !ok {
		return "", fmt.Errorf("m365sim: invalid content type %q", contentType)
	}
	if n < 0 || gen == nil {
		return "", fmt.Errorf("m365sim: a generated blob needs n >= 0 and a generator")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addBlobLocked(&blob{contentType: ct, created: t.now().Add(t.opts.AvailabilityDelay), gen: gen, n: n}), nil
}

// StopSubscription disables the subscription of contentType, as a call of
// subscriptions/stop would: listings answer AF20023 until it is started
// again. It fails for a content type that was never subscribed.
func (t *Tenant) StopSubscription(contentType string) error {
	ct, ok := canonContentType(contentType)
	if !ok {
		return fmt.Errorf("m365sim: invalid content type %q", contentType)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sub := t.st.subs[ct]
	if sub == nil {
		return fmt.Errorf("m365sim: no subscription to %s", ct)
	}
	sub.Status = "disabled"
	sub.stopLocked(t.now())
	return nil
}

// AuditRecords returns every record of a content type (visible or not), for tests.
func (t *Tenant) AuditRecords(contentType string) []json.RawMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []json.RawMessage
	for _, b := range t.st.blobs {
		if strings.EqualFold(b.contentType, contentType) {
			out = append(out, b.recordList()...)
		}
	}
	return out
}

// SetContentPageSize sets how many content blobs one listing page holds
// (default 200), so tests can exercise NextPageUri.
func (t *Tenant) SetContentPageSize(n int) {
	t.mu.Lock()
	t.pageSize = n
	t.mu.Unlock()
}

var permActivity = anyOf("ActivityFeed.Read")

func (t *Tenant) manage(r *req) *resp {
	if a := t.authenticate(r, manageResource); a != nil {
		return a
	}
	s := r.segs
	if len(s) < 3 || !strings.EqualFold(s[1], "activity") || !strings.EqualFold(s[2], "feed") {
		res := newResp(http.StatusNotFound)
		res.body = []byte(`{"Message":"No HTTP resource was found that matches the request URI."}`)
		res.hdr.Set("Content-Type", "application/json; charset=utf-8")
		return res
	}
	if !isGUID(s[0]) {
		return manageError(http.StatusBadRequest, "AF20013", fmt.Sprintf("The tenant ID passed in the URL (%s) is not a valid GUID.", s[0]))
	}
	if !strings.EqualFold(s[0], r.tok.Tid) {
		return manageError(http.StatusForbidden, "AF20010", fmt.Sprintf("The tenant ID passed in the URL (%s) does not match the tenant ID passed in the access token (%s).", s[0], r.tok.Tid))
	}
	if m := permActivity.missing(r.tok.Roles); m != "" {
		return t.forbidden(r, m)
	}
	op := strings.ToLower(strings.Join(s[3:], "/"))
	method := map[string]string{"subscriptions/start": "StartSubscription", "subscriptions/stop": "StopSubscription",
		"subscriptions/list": "ListSubscriptions", "subscriptions/content": "ListContent", "subscriptions/notifications": "ListNotifications"}[op]
	if method == "" {
		method = "GetBlob"
	}
	if res := t.manageThrottle(r, method); res != nil {
		return res
	}
	switch {
	case op == "subscriptions/start" && r.method == http.MethodPost:
		return t.subStart(r)
	case op == "subscriptions/stop" && r.method == http.MethodPost:
		return t.subStop(r)
	case op == "subscriptions/list" && r.method == http.MethodGet:
		return t.subList()
	case op == "subscriptions/content" && r.method == http.MethodGet:
		return t.contentList(r)
	case op == "subscriptions/notifications" && r.method == http.MethodGet:
		if _, res := t.contentTypeParam(r); res != nil {
			return res
		}
		return jsonPlain(http.StatusOK, []any{})
	case op == "resources/dlpsensitivetypes" && r.method == http.MethodGet:
		return jsonPlain(http.StatusOK, []map[string]string{{"id": "50842eb7-edc8-4019-85dd-5a5c1f2bb085", "name": "Credit Card Number"},
			{"id": "a44669fe-0d48-453d-a9b1-2cc83f2cba77", "name": "U.S. Social Security Number (SSN)"}})
	case len(s) == 5 && strings.EqualFold(s[3], "audit") && r.method == http.MethodGet:
		return t.getBlob(r, s[4])
	}
	res := newResp(http.StatusMethodNotAllowed)
	res.body = []byte(`{"Message":"The requested resource does not support http method '` + r.method + `'."}`)
	res.hdr.Set("Content-Type", "application/json; charset=utf-8")
	if method == "GetBlob" {
		res.status = http.StatusNotFound
		res.body = []byte(`{"Message":"No HTTP resource was found that matches the request URI."}`)
	}
	return res
}

func (t *Tenant) contentTypeParam(r *req) (string, *resp) {
	v := r.q("contentType")
	if v == "" {
		return "", manageError(http.StatusBadRequest, "AF20001", "A required parameter is missing: contentType.")
	}
	ct, ok := canonContentType(v)
	if !ok {
		return "", manageError(http.StatusBadRequest, "AF20020", fmt.Sprintf("The content type specified (%s) is invalid.", v))
	}
	return ct, nil
}

func (t *Tenant) subStart(r *req) *resp {
	ct, res := t.contentTypeParam(r)
	if res != nil {
		return res
	}
	var wh map[string]any
	if len(r.body) > 0 {
		body := decodeObj(r.body)
		if body == nil {
			return manageError(http.StatusBadRequest, "AF20002", "The request body is not valid JSON.")
		}
		if w, ok := body["webhook"].(map[string]any); ok {
			addr := str(w, "address")
			if !strings.HasPrefix(strings.ToLower(addr), "https://") {
				return manageError(http.StatusBadRequest, "AF20021", "The webhook endpoint {"+addr+"} could not be validated. The address must begin with HTTPS.")
			}
			if exp := str(w, "expiration"); exp != "" {
				if tm, ok := parseManageTime(exp); ok && tm.Before(t.now()) {
					return manageError(http.StatusBadRequest, "AF20003", "The expiration date ("+exp+") specified is in the past.")
				}
			}
			wh = map[string]any{"status": "enabled", "address": addr, "authId": w["authId"], "expiration": nil}
			if e := str(w, "expiration"); e != "" {
				wh["expiration"] = e
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sub := t.st.subs[ct]
	if sub != nil && sub.Status == "enabled" {
		if wh == nil || fmt.Sprint(wh) == fmt.Sprint(sub.Webhook) {
			return manageError(http.StatusBadRequest, "AF20024", "The subscription is already enabled. No property change.")
		}
	}
	if res := t.startThrottledLocked(sub); res != nil {
		return res
	}
	if sub == nil {
		sub = &subscription{ContentType: ct, started: t.now()}
		t.st.subs[ct] = sub
	}
	t.startedLocked(sub)
	sub.Status = "enabled"
	sub.Webhook = wh
	return jsonPlain(http.StatusOK, sub)
}

func (t *Tenant) subStop(r *req) *resp {
	ct, res := t.contentTypeParam(r)
	if res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sub := t.st.subs[ct]
	if sub == nil {
		return manageError(http.StatusBadRequest, "AF20022", "No subscription found for the specified content type.")
	}
	sub.Status = "disabled"
	sub.stopLocked(t.now())
	res = newResp(http.StatusOK)
	return res
}

func (t *Tenant) subList() *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []*subscription{}
	for _, ct := range contentTypes {
		if s := t.st.subs[ct]; s != nil {
			out = append(out, s)
		}
	}
	return jsonPlain(http.StatusOK, out)
}

// parseManageTime accepts the documented formats and RFC 3339.
func parseManageTime(s string) (time.Time, bool) {
	for _, f := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02", time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if tm, err := time.Parse(f, s); err == nil {
			return tm.UTC(), true
		}
	}
	return time.Time{}, false
}

const windowMsg = "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time no more than 7 days in the past."

func (t *Tenant) contentList(r *req) *resp {
	ct, res := t.contentTypeParam(r)
	if res != nil {
		return res
	}
	now := t.now()
	st, et := r.q("startTime"), r.q("endTime")
	var start, end time.Time
	switch {
	case st == "" && et == "":
		// Everything available now, on whole seconds so that NextPageUri
		// (which carries the window) selects the same blobs.
		end = now.Truncate(time.Second).Add(time.Second)
		start = end.Add(-24 * time.Hour)
	case st == "" || et == "":
		return manageError(http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart.")
	default:
		var ok1, ok2 bool
		start, ok1 = parseManageTime(st)
		end, ok2 = parseManageTime(et)
		if !ok1 || !ok2 {
			return manageError(http.StatusBadRequest, "AF20002", "The value of a datetime parameter (startTime or endTime) is not valid.")
		}
		if !start.Before(end) || end.Sub(start) > 24*time.Hour {
			return manageError(http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart.")
		}
		if start.Before(now.Add(-7 * 24 * time.Hour)) {
			return manageError(http.StatusBadRequest, "AF20030", windowMsg)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sub := t.st.subs[ct]
	if sub == nil {
		return manageError(http.StatusBadRequest, "AF20022", "No subscription found for the specified content type.")
	}
	if sub.Status != "enabled" {
		return manageError(http.StatusBadRequest, "AF20023", "The subscription was disabled.")
	}
	if sub.settle > 0 {
		// Right after a start (manage_subs.go).
		sub.settle--
		return manageError(http.StatusBadRequest, "AF20023", "The subscription was disabled.")
	}
	snap := now
	off := 0
	if np := r.q("nextPage"); np != "" {
		p, ok := decodeSkip(np)
		if !ok {
			return manageError(http.StatusBadRequest, "AF20031", "The nextPage value ("+np+") is invalid.")
		}
		off, snap = p.Off, unixNano(p.Snap)
	}
	var bs []*blob
	for _, b := range t.st.blobs {
		if b.contentType == ct && !b.listedAt().After(snap) && !b.created.Before(start) && b.created.Before(end) && t.subscribedAtLocked(sub, b.created) {
			bs = append(bs, b)
		}
	}
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].created.Before(bs[j].created) })
	size := t.pageSize
	if size <= 0 {
		size = 200
	}
	if off > len(bs) {
		off = len(bs)
	}
	stop := min(off+size, len(bs))
	out := make([]map[string]string, 0, stop-off)
	t.fmu.Lock()
	cbase := cmp.Or(t.contentBase, t.base)
	t.fmu.Unlock()
	for _, b := range bs[off:stop] {
		out = append(out, map[string]string{
			"contentType": b.contentType, "contentId": b.id,
			"contentUri":        cbase + "/api/v1.0/" + t.opts.TenantID + "/activity/feed/audit/" + b.id,
			"contentCreated":    b.created.UTC().Format("2006-01-02T15:04:05.000Z"),
			"contentExpiration": b.created.Add(7 * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05.000Z"),
		})
	}
	res = jsonPlain(http.StatusOK, out)
	if stop < len(bs) {
		// As documented (note /api/v1/, not /api/v1.0/).
		tok := strings.TrimSuffix(strings.TrimPrefix(encodeSkip(pageToken{Off: stop, Snap: snap.UnixNano()}), "X%27"), "%27")
		res.hdr.Set("NextPageUri", fmt.Sprintf("%s/api/v1/%s/activity/feed/subscriptions/content?contentType=%s&startTime=%s&endTime=%s&nextPage=%s",
			t.base, t.opts.TenantID, ct, start.Format("2006-01-02T15:04:05"), end.Format("2006-01-02T15:04:05"), tok))
	}
	return res
}

func (t *Tenant) getBlob(r *req, id string) *resp {
	now := t.now()
	t.mu.Lock()
	i := slices.IndexFunc(t.st.blobs, func(b *blob) bool { return b.id == id })
	if i < 0 || t.st.blobs[i].created.After(now) {
		t.mu.Unlock()
		if !strings.Contains(id, "$") {
			return manageError(http.StatusBadRequest, "AF20052", "Content ID "+id+" in the URL is invalid.")
		}
		return manageError(http.StatusNotFound, "AF20050", "The specified content ("+id+") does not exist.")
	}
	b := t.st.blobs[i]
	t.mu.Unlock()
	if now.Sub(b.created) > 7*24*time.Hour {
		return manageError(http.StatusBadRequest, "AF20051", "Content requested with the key "+id+" has already expired. Content older than 7 days cannot be retrieved.")
	}
	res := newResp(http.StatusOK)
	res.body = b.body() // a generated blob is made here and dropped after the response
	res.hdr.Set("Content-Type", "application/json; charset=utf-8")
	return res
}

// SetContentURIBase makes content listings advertise blob URIs under base
// (scheme and host, e.g. an attacker's http://127.0.0.1:port) instead of the
// emulator's own address; "" restores it. Not a Microsoft behaviour: a test
// knob for what a tampered listing would carry, to check that the
// Management API token is sent to the Management API's own host only.
// Microsoft lists contentUri under https://manage.office.com/api/v1.0/{tenant}/activity/feed/audit/{id}
// (https://learn.microsoft.com/en-us/office/office-365-management-api/office-365-management-activity-api-reference#list-available-content).
func (t *Tenant) SetContentURIBase(base string) {
	t.fmu.Lock()
	t.contentBase = base
	t.fmu.Unlock()
}
