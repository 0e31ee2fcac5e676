package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/approval"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditquery"
)

func (c *Console) view(s *session, p analyst.Analyst, nav, title string, data any) view {
	return view{Title: title, Person: p, Session: s, CSRF: s.csrf, Nav: nav, Data: data, Flash: c.takeFlash(s.key)}
}

func (c *Console) takeFlash(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sess[key]; ok {
		v := s.flash
		s.flash = ""
		return v
	}
	return ""
}

// flash leaves a one-line message for the next page of the session.
func (c *Console) flash(key, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sess[key]; ok {
		s.flash = msg
	}
}

// ---- approvals ----

type approvalsData struct {
	Pending []approval.Pending
	Error   string
}

func (c *Console) approvals(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	d := approvalsData{}
	rep, err := c.command(r.Context(), c.actor(s, p), approval.OpList, "", "")
	switch {
	case err != nil:
		d.Error = err.Error()
	case !rep.OK:
		d.Error = rep.Error
	default:
		d.Pending = rep.Pending
		slices.SortFunc(d.Pending, func(a, b approval.Pending) int { return b.CreatedAt.Compare(a.CreatedAt) })
	}
	c.render(w, "approvals", c.view(s, p, "approvals", "Pending approvals", d))
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	id, op := r.PathValue("id"), r.PathValue("op")
	if op != approval.OpApprove && op != approval.OpDeny {
		http.NotFound(w, r)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if op == approval.OpDeny && reason == "" {
		c.flash(s.key, "A denial needs a reason.")
		http.Redirect(w, r, "/approvals", http.StatusSeeOther)
		return
	}
	rep, err := c.command(r.Context(), c.actor(s, p), op, id, reason)
	switch {
	case err != nil:
		c.flash(s.key, "Not done: "+err.Error())
	case !rep.OK:
		c.flash(s.key, "Refused: "+rep.Error)
	case op == approval.OpDeny:
		c.flash(s.key, "Denied request "+id+".")
	case rep.Complete:
		c.flash(s.key, "Approved request "+id+": all approvals are in; the action runs now.")
	default:
		n, need := 0, 0
		if rep.Entry != nil {
			n, need = len(rep.Entry.Approvals), rep.Entry.Required
		}
		c.flash(s.key, fmt.Sprintf("Approved request %s (%d of %d approvals).", id, n, need))
	}
	http.Redirect(w, r, "/approvals", http.StatusSeeOther)
}

// ---- audit timeline ----

// PageSize is the number of records on one timeline page.
const PageSize = 50

type auditData struct {
	Filter  map[string]string
	Records []audit.Record
	Next    string // query string of the next page ("" none)
	Error   string
	Chain   *chainView
	First   uint64
	Last    uint64
}

type chainView struct {
	OK        bool
	Records   int
	LastSeq   uint64
	Reason    string
	CheckedAt time.Time
	Error     string
}

var filterKeys = []string{"since", "until", "actor", "action", "target", "outcome", "playbook", "request"}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	q := r.URL.Query()
	d := auditData{Filter: map[string]string{}}
	for _, k := range filterKeys {
		d.Filter[k] = strings.TrimSpace(q.Get(k))
	}
	if _, set := q["since"]; !set {
		d.Filter["since"] = "24h"
	}
	f, err := c.filter(d.Filter)
	if err != nil {
		d.Error = err.Error()
	} else {
		// Newest first, through the engine's audit index: a page of any
		// filter without reading the whole trail; "before" is the cursor.
		before, _ := strconv.ParseUint(q.Get("before"), 10, 64)
		rep, err := c.queries().Page(r.Context(), f, auditquery.OrderNewest, before, PageSize)
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Records, d.First, d.Last = records(rep.Items), rep.FirstSeq, rep.LastSeq
			if rep.More && rep.NextSeq > 0 && (before == 0 || rep.NextSeq < before) {
				nq := url.Values{}
				for k, v := range d.Filter {
					if v != "" {
						nq.Set(k, v)
					}
				}
				nq.Set("before", strconv.FormatUint(rep.NextSeq, 10))
				d.Next = nq.Encode()
			}
		}
	}
	if res, at, err, ok := c.chainState(r.Context()); ok {
		cv := &chainView{OK: res.OK && err == nil, Records: res.Records, LastSeq: res.LastSeq, Reason: res.Reason, CheckedAt: at}
		if err != nil {
			cv.Error = err.Error()
		}
		d.Chain = cv
	}
	c.render(w, "audit", c.view(s, p, "audit", "Audit timeline", d))
}

// filter reads the timeline's filter: times as RFC 3339 or a duration back
// from now, as the CLI takes them.
func (c *Console) filter(m map[string]string) (auditquery.Filter, error) {
	when := func(k string) (time.Time, error) {
		v := m[k]
		if v == "" {
			return time.Time{}, nil
		}
		if d, err := time.ParseDuration(v); err == nil {
			return c.cfg.Now().Add(-d), nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %q is neither an RFC 3339 time nor a duration such as 24h", k, v)
		}
		return t, nil
	}
	since, err := when("since")
	if err != nil {
		return auditquery.Filter{}, err
	}
	until, err := when("until")
	if err != nil {
		return auditquery.Filter{}, err
	}
	return auditquery.Filter{Since: since, Until: until, Actor: m["actor"], Action: m["action"], Target: m["target"],
		Outcome: m["outcome"], Playbook: m["playbook"], RequestID: m["request"]}, nil
}

// ---- one request ----

type requestData struct {
	ID       string
	Records  []audit.Record
	Error    string
	Action   string
	Target   map[string]string
	Undoable bool
	Why      string // why there is no undo button
}

func (c *Console) requestPage(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	d := requestData{ID: r.PathValue("id")}
	recs, err := c.requestRecords(r.Context(), d.ID)
	if err != nil {
		d.Error = err.Error()
	}
	d.Records = recs
	succeeded := false
	for _, rec := range recs {
		if rec.Action != "" && d.Action == "" {
			d.Action, d.Target = rec.Action, rec.Target
		}
		if rec.Outcome == audit.Succeeded {
			succeeded = true
		}
	}
	spec, ok := actions.Lookup(actions.Name(d.Action))
	switch {
	case len(recs) == 0:
		d.Why = "no records"
	case !ok || spec.Inverse == "":
		d.Why = "this action cannot be undone"
		if ok && spec.Irreversible != "" {
			d.Why += ": " + spec.Irreversible
		}
	case !succeeded:
		d.Why = "the action has not succeeded"
	case !p.Allowed(string(actions.Undo)):
		d.Why = "your role may not undo"
	default:
		d.Undoable = true
	}
	c.render(w, "request", c.view(s, p, "audit", "Request "+d.ID, d))
}

func (c *Console) undo(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	id := r.PathValue("id")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.flash(s.key, "An undo needs a reason.")
		http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	req := &actions.Request{Action: actions.Undo, Target: actions.Target{RequestID: id}, RequestedBy: c.actor(s, p), Reason: reason}
	o, err := c.send(r.Context(), req)
	if err != nil {
		c.flash(s.key, "Undo not sent: "+err.Error())
		http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	c.flash(s.key, describeOutcome(o))
	http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
}

func describeOutcome(o outcome) string {
	if o.TimedOut {
		return fmt.Sprintf("Request %s is queued; its outcome was not in yet (it still runs: see its page).", o.RequestID)
	}
	msg := fmt.Sprintf("%s: %s (request %s)", o.Action, o.Outcome.Outcome, o.RequestID)
	if o.Detail != "" {
		msg += " - " + o.Detail
	}
	if o.ErrorCode != "" {
		msg += " [" + o.ErrorCode + "]"
	}
	return msg
}

// ---- act ----

// targetKinds are the targets the act form offers (one text field each).
var targetKinds = []string{"user", "ip", "sender", "device", "file", "url", "domain"}

type actChoice struct {
	Name, CLI, Target, Description string
	Reversible                     bool
	Expires                        bool
	// Params describes the parameters the action takes, from its catalogue
	// entry ("scope (string), recipients (list of string)"; "" for none).
	Params string
}

// paramsHelp describes an action's parameters for the act form.
func paramsHelp(sp actions.Spec) string {
	var out []string
	for _, a := range sp.Args {
		out = append(out, a.Name+" ("+a.Describe()+")")
	}
	return strings.Join(out, ", ")
}

// paramLines reads the act form's parameter lines, NAME=VALUE each.
func paramLines(text string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("parameter line %q is not NAME=VALUE", l)
		}
		k = strings.TrimSpace(k)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("parameter %q is given twice", k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

type actData struct {
	Choices []actChoice
	// Form echoes the fields (preview and result).
	Form    map[string]string
	Preview *outcome
	Result  *outcome
	Error   string
}

func (c *Console) choices(p analyst.Analyst) []actChoice {
	var out []actChoice
	for _, sp := range actions.Specs() {
		if sp.CLI == "" || sp.Meta || sp.InverseOnly || !slices.Contains(targetKinds, sp.Target) || !p.Allowed(string(sp.Name)) {
			continue
		}
		out = append(out, actChoice{Name: string(sp.Name), CLI: sp.CLI, Target: sp.Target, Description: sp.Description, Reversible: sp.Inverse != "", Expires: sp.Expires, Params: paramsHelp(sp)})
	}
	return out
}

func (c *Console) actPage(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	d := actData{Choices: c.choices(p), Form: map[string]string{"action": r.URL.Query().Get("action"), "target": r.URL.Query().Get("target")}}
	c.render(w, "act", c.view(s, p, "act", "Act", d))
}

// act runs the act form: step "preview" sends a dry run and shows its plan;
// step "run" sends the real request. A generated password is in this one
// response only.
func (c *Console) act(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	form := map[string]string{}
	for _, k := range []string{"action", "target", "reason", "ticket", "expires", "params", "step"} {
		form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	d := actData{Choices: c.choices(p), Form: form}
	spec, ok := actions.Lookup(actions.Name(form["action"]))
	i := slices.IndexFunc(d.Choices, func(ch actChoice) bool { return ch.Name == form["action"] })
	switch {
	case !ok || i < 0:
		// The engine would refuse it too; the page does not even send it.
		d.Error = fmt.Sprintf("%q is not an action your role may request here", form["action"])
	case form["reason"] == "":
		d.Error = "A reason is required: it goes into the audit trail."
	case form["target"] == "":
		d.Error = "Say what to act on (" + spec.Target + ")."
	}
	if d.Error != "" {
		c.renderStatus(w, http.StatusBadRequest, "act", c.view(s, p, "act", "Act", d))
		return
	}
	// The parameters the action declares, as lines of NAME=VALUE (the
	// Expires field is one more line); checked as the engine checks them.
	lines, err := paramLines(form["params"])
	if err == nil && spec.Expires && form["expires"] != "" {
		if _, dup := lines["expires"]; dup {
			err = errors.New("expires is given twice")
		}
		lines["expires"] = form["expires"]
	}
	var params map[string]any
	if err == nil {
		params, err = spec.ParamsFromText(lines)
	}
	target, terr := spec.TargetFor(form["target"])
	if err == nil {
		err = terr
	}
	if err != nil {
		d.Error = err.Error()
		c.renderStatus(w, http.StatusBadRequest, "act", c.view(s, p, "act", "Act", d))
		return
	}
	req := &actions.Request{Action: spec.Name, Target: target, RequestedBy: c.actor(s, p),
		Reason: form["reason"], Ticket: form["ticket"], DryRun: form["step"] != "run", Params: params}
	o, err := c.send(r.Context(), req)
	status := http.StatusOK
	switch {
	case err != nil:
		d.Error = err.Error()
		status = http.StatusBadRequest
	case req.DryRun:
		d.Preview = &o
	default:
		d.Result = &o
	}
	c.renderStatus(w, status, "act", c.view(s, p, "act", "Act", d))
}

// ---- status ----

type statusData struct {
	Feeds      any
	FeedsError string
	Playbooks  *PlaybookStatus
}

func (c *Console) statusPage(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	d := statusData{}
	if c.cfg.Feeds != nil {
		lines, err := c.cfg.Feeds(r.Context())
		if err != nil {
			d.FeedsError = err.Error()
		}
		d.Feeds = lines
	}
	if c.cfg.Playbooks != nil {
		ps := c.cfg.Playbooks()
		d.Playbooks = &ps
	}
	c.render(w, "status", c.view(s, p, "status", "Feeds and playbooks", d))
}

// ---- live updates ----

// events is a server-sent event stream: "changed" whenever the pending
// approvals or the audit trail's last record change. The pages reload
// their main section when told. It ends with the request.
func (c *Console) events(w http.ResponseWriter, r *http.Request, s *session, p analyst.Analyst) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	ctx := r.Context()
	var last string
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		if _, ok := c.session(r); !ok {
			_, _ = fmt.Fprint(w, "event: signedout\ndata: {}\n\n")
			fl.Flush()
			return
		}
		fp := c.fingerprint(r, s, p)
		if fp != "" && fp != last {
			if last != "" {
				b, _ := json.Marshal(map[string]string{"at": c.cfg.Now().UTC().Format(time.RFC3339)})
				_, _ = fmt.Fprintf(w, "event: changed\ndata: %s\n\n", b)
			} else {
				_, _ = fmt.Fprint(w, "event: ready\ndata: {}\n\n")
			}
			fl.Flush()
			last = fp
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Console) fingerprint(r *http.Request, s *session, p analyst.Analyst) string {
	var b bytes.Buffer
	if rep, err := c.command(r.Context(), c.actor(s, p), approval.OpList, "", ""); err == nil && rep.OK {
		for _, e := range rep.Pending {
			fmt.Fprintf(&b, "%s:%d;", e.RequestID, len(e.Approvals))
		}
	} else {
		return ""
	}
	rep, err := c.queries().Do(r.Context(), auditquery.Query{Op: auditquery.OpList, Limit: 1, AfterSeq: 1 << 62})
	if err != nil {
		return ""
	}
	fmt.Fprintf(&b, "|%d", rep.LastSeq)
	return b.String()
}
