package defenderexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/clock"
)

// Machine is a Defender device as GET /api/machines returns it (the fields
// used here: https://learn.microsoft.com/defender-endpoint/api/machine).
type Machine struct {
	ID              string   `json:"id"`
	ComputerDNSName string   `json:"computerDnsName"`
	OSPlatform      string   `json:"osPlatform"`
	AADDeviceID     string   `json:"aadDeviceId"`
	MachineTags     []string `json:"machineTags"`
	HealthStatus    string   `json:"healthStatus"`
}

// MachineAction is a Defender machine action
// (https://learn.microsoft.com/defender-endpoint/api/machineaction).
type MachineAction struct {
	ID               string    `json:"id"`
	Type             string    `json:"type"`
	Scope            string    `json:"scope"`
	Status           string    `json:"status"`
	MachineID        string    `json:"machineId"`
	RequestorComment string    `json:"requestorComment"`
	Created          time.Time `json:"creationDateTimeUtc"`
	Updated          time.Time `json:"lastUpdateDateTimeUtc"`
}

// Final reports whether the action's status is final: Succeeded, Failed,
// TimeOut or Cancelled.
func (a MachineAction) Final() bool {
	switch a.Status {
	case "Succeeded", "Failed", "TimeOut", "Cancelled":
		return true
	}
	return false
}

type list[T any] struct {
	Value []T `json:"value"`
}

// odataString is an OData string literal: single quotes doubled, so no value
// ends the literal and changes the filter.
func odataString(s string) string { return actions.ODataString(s) }

// resolve finds the device target names: a machine id directly, an Entra
// device id or a computer DNS name through $filter. A name matching no device
// or several is a permanent error naming it.
func (e *Executor) resolve(ctx context.Context, name string, perm string) (Machine, error) {
	key := strings.ToLower(name)
	now := e.clock.Now()
	e.mu.Lock()
	if c, ok := e.devices[key]; ok && now.Sub(c.at) < e.cfg.DeviceCacheTTL {
		e.mu.Unlock()
		return c.m, nil
	}
	e.mu.Unlock()
	var m Machine
	if actions.ValidMachineID(name) {
		if _, err := e.c.call(ctx, apiMachinesGet, http.MethodGet, "/api/machines/"+url.PathEscape(strings.ToLower(name)), nil, &m, perm); err != nil {
			if ae := actions.AsError(err); ae.Status == http.StatusNotFound {
				return Machine{}, &actions.Error{Class: actions.Permanent, Status: 404, Code: "DeviceNotFound", Message: "no Defender device has machine id " + name}
			}
			return Machine{}, err
		}
	} else {
		prop := "computerDnsName"
		if actions.ValidUser(name) && !strings.Contains(name, "@") { // a GUID
			prop = "aadDeviceId"
		}
		q := url.Values{"$filter": {prop + " eq " + odataString(key)}}
		var l list[Machine]
		if _, err := e.c.call(ctx, apiMachinesList, http.MethodGet, "/api/machines?"+q.Encode(), nil, &l, perm); err != nil {
			return Machine{}, err
		}
		switch len(l.Value) {
		case 0:
			return Machine{}, &actions.Error{Class: actions.Permanent, Code: "DeviceNotFound", Message: "no Defender device has " + prop + " " + name}
		case 1:
			m = l.Value[0]
		default:
			return Machine{}, &actions.Error{Class: actions.Permanent, Code: "AmbiguousDevice", Message: fmt.Sprintf("%d Defender devices have %s %s: name the machine id", len(l.Value), prop, name)}
		}
	}
	e.mu.Lock()
	e.devices[key] = cachedDevice{m: m, at: now}
	e.devices[strings.ToLower(m.ID)] = cachedDevice{m: m, at: now}
	e.mu.Unlock()
	return m, nil
}

// CheckDevice is the device guard, a pure function: a protected device
// (listed, or tagged) is refused to playbooks and the engine, and to an
// analyst without an explicit override; a playbook's isolation of a server
// or domain controller waits for approval.
func CheckDevice(req *actions.Request, m Machine, protected, protectedTags, serverTags []string) actions.Decision {
	name := m.ComputerDNSName
	short, _, _ := strings.Cut(name, ".")
	why := ""
	for _, p := range protected {
		if strings.EqualFold(p, m.ID) || strings.EqualFold(p, m.AADDeviceID) || strings.EqualFold(p, name) || (short != "" && strings.EqualFold(p, short)) {
			why = "listed"
		}
	}
	for _, t := range m.MachineTags {
		if slices.ContainsFunc(protectedTags, func(p string) bool { return strings.EqualFold(p, t) }) {
			why = "machine tag " + t
		}
	}
	if why != "" {
		what := fmt.Sprintf("device %s (%s) is protected (%s)", name, m.ID, why)
		switch {
		case req.RequestedBy.Kind == "analyst" && req.OverrideProtected:
			return actions.Decision{Allow: true, Override: true, Reason: what + "; analyst override by " + req.RequestedBy.Name}
		case req.RequestedBy.Kind == "analyst":
			return actions.Decision{Reason: what + " (an analyst may override explicitly)"}
		default:
			return actions.Decision{Reason: what + "; " + req.RequestedBy.Kind + " requests never isolate it"}
		}
	}
	if req.RequestedBy.Kind != "analyst" {
		server := strings.Contains(strings.ToLower(m.OSPlatform), "server")
		tag := ""
		for _, t := range m.MachineTags {
			if slices.ContainsFunc(serverTags, func(s string) bool { return strings.EqualFold(s, t) }) {
				server, tag = true, t
			}
		}
		if server {
			kind := "a server (osPlatform " + m.OSPlatform + ")"
			if tag != "" {
				kind = "a server or domain controller (machine tag " + tag + ")"
			}
			return actions.Decision{Allow: true, Approval: fmt.Sprintf("isolating device %s, %s, by a %s", name, kind, req.RequestedBy.Kind)}
		}
	}
	return actions.Decision{Allow: true}
}

// deviceGuard resolves the device and runs CheckDevice.
func (e *Executor) deviceGuard(ctx context.Context, req *actions.Request, _ actions.Params) (actions.Decision, error) {
	m, err := e.resolve(ctx, req.Target.Device, permission(actions.IsolateDevice))
	if err != nil {
		return actions.Decision{}, err
	}
	return CheckDevice(req, m, e.cfg.ProtectedDevices, e.cfg.ProtectedTags, e.cfg.ServerTags), nil
}

// comment is the requestorComment of Responder's machine actions: it names the
// request, so a redelivery recognises its own action and the portal shows
// where it came from.
func comment(req *actions.Request) string {
	s := "Responder request " + req.ID + " (" + req.RequestedBy.Kind + " " + req.RequestedBy.Name + ")"
	if req.Reason != "" {
		s += ": " + req.Reason
	}
	if len(s) > 1000 {
		s = s[:1000]
	}
	return s
}

// current is the device's latest isolation action that did not fail: what is
// in force or on its way (nil: none).
func (e *Executor) current(ctx context.Context, id, perm string) (*MachineAction, error) {
	q := url.Values{"$filter": {"machineId eq " + odataString(id)}}
	var l list[MachineAction]
	if _, err := e.c.call(ctx, apiMachineActionsList, http.MethodGet, "/api/machineactions?"+q.Encode(), nil, &l, perm); err != nil {
		return nil, err
	}
	var cur *MachineAction
	for i, a := range l.Value {
		if a.Type != "Isolate" && a.Type != "Unisolate" {
			continue
		}
		switch a.Status {
		case "Failed", "TimeOut", "Cancelled":
			continue
		}
		if cur == nil || a.Created.After(cur.Created) {
			cur = &l.Value[i]
		}
	}
	return cur, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// setIsolation isolates or releases the device and follows the machine action
// until it is final.
func (e *Executor) setIsolation(ctx context.Context, req *actions.Request, p actions.Params, isolate, plan bool) (actions.Result, error) {
	perm := permission(req.Action)
	m, err := e.resolve(ctx, req.Target.Device, perm)
	if err != nil {
		return actions.Result{}, err
	}
	want, verb, api, path := "Isolate", "isolate", apiIsolate, "/api/machines/"+url.PathEscape(m.ID)+"/isolate"
	if !isolate {
		want, verb, api, path = "Unisolate", "release", apiUnisolate, "/api/machines/"+url.PathEscape(m.ID)+"/unisolate"
	}
	cur, err := e.current(ctx, m.ID, perm)
	if err != nil {
		return actions.Result{}, err
	}
	isolated := cur != nil && cur.Type == "Isolate"
	before := mustJSON(map[string]any{"machine_id": m.ID, "computer_dns_name": m.ComputerDNSName, "os_platform": m.OSPlatform, "isolated_or_pending": isolated})
	inverse := &actions.Step{Action: actions.ReleaseDevice, Target: actions.Target{Device: m.ID}}
	if !isolate {
		inverse = &actions.Step{Action: actions.IsolateDevice, Target: actions.Target{Device: m.ID}}
		if cur != nil && cur.Scope == "Selective" {
			inverse.Params = map[string]any{"selective": true}
		}
	}
	name := m.ComputerDNSName + " (" + m.ID + ")"
	if plan {
		detail := fmt.Sprintf("%s device %s", verb, name)
		if cur != nil && cur.Type == want {
			detail = fmt.Sprintf("leave device %s alone: its %s is %s already", name, strings.ToLower(want), cur.Status)
		}
		return actions.Result{Detail: detail, Before: before}, nil
	}
	var act *MachineAction
	switch {
	case cur != nil && cur.Type == want && cur.Status == "Succeeded":
		return actions.Result{AlreadyDone: true, Before: before,
			Detail: fmt.Sprintf("device %s: %s in force since machine action %s", name, strings.ToLower(want), cur.ID)}, nil
	case cur != nil && cur.Type == want:
		act = cur // pending or in progress: follow it
	case cur == nil && !isolate:
		return actions.Result{AlreadyDone: true, Before: before, Detail: "device " + name + " is not isolated"}, nil
	default:
		body := map[string]any{"Comment": comment(req)}
		if isolate {
			body["IsolationType"] = "Full"
			if p.Selective {
				body["IsolationType"] = "Selective"
			}
		}
		var a MachineAction
		if _, err := e.c.call(ctx, api, http.MethodPost, path, body, &a, perm); err != nil {
			if ae := actions.AsError(err); ae.Code == "ActiveRequestAlreadyExists" {
				// Another action on the device is on its way (a race with
				// the portal or another engine): follow what is there.
				if cur, err2 := e.current(ctx, m.ID, perm); err2 == nil && cur != nil && cur.Type == want {
					act = cur
					break
				}
			}
			return actions.Result{}, err
		}
		act = &a
	}
	ours := strings.Contains(act.RequestorComment, req.ID) || (p.UndoOf != "" && strings.Contains(act.RequestorComment, p.UndoOf))
	final, err := e.follow(ctx, act, perm)
	if err != nil {
		return actions.Result{}, err
	}
	after := mustJSON(map[string]any{"machine_action_id": final.ID, "type": final.Type, "scope": final.Scope, "status": final.Status})
	if final.Status != "Succeeded" {
		return actions.Result{}, &actions.Error{Class: actions.Permanent, Code: "MachineAction" + final.Status,
			Message: fmt.Sprintf("machine action %s (%s of device %s) ended %s", final.ID, final.Type, name, final.Status)}
	}
	res := actions.Result{Before: before, After: after, GraphRequestIDs: []string{final.ID},
		Detail: fmt.Sprintf("device %s: machine action %s (%s%s) Succeeded", name, final.ID, final.Type, scopeNote(final.Scope))}
	if ours {
		res.Undo = inverse
	} else {
		res.AlreadyDone = true
		res.Detail += "; the action was requested by someone else, so nothing is Responder's to undo"
	}
	return res, nil
}

func scopeNote(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

// follow polls the machine action with backoff (PollInitial doubling up to
// PollMax, for at most PollTimeout) until its status is final. Each status
// change is logged; the final one lands in the audit record.
func (e *Executor) follow(ctx context.Context, a *MachineAction, perm string) (MachineAction, error) {
	if a.Final() {
		return *a, nil
	}
	deadline := e.clock.Now().Add(e.cfg.PollTimeout)
	wait := e.cfg.PollInitial
	last := a.Status
	for {
		if err := clock.Sleep(ctx, e.clock, wait); err != nil {
			return MachineAction{}, classifyTransport(err)
		}
		var got MachineAction
		if _, err := e.c.call(ctx, apiMachineActionsGet, http.MethodGet, "/api/machineactions/"+url.PathEscape(a.ID), nil, &got, perm); err != nil {
			return MachineAction{}, err
		}
		if got.Status != last {
			e.log.Info("machine action status", "machine_action", got.ID, "type", got.Type, "status", got.Status)
			last = got.Status
		}
		if got.Final() {
			return got, nil
		}
		if !e.clock.Now().Before(deadline) {
			return MachineAction{}, &actions.Error{Class: actions.Transient, Code: "MachineActionPending",
				Message: fmt.Sprintf("machine action %s is still %s after %s; the retry follows it", a.ID, got.Status, e.cfg.PollTimeout)}
		}
		wait = min(wait*2, e.cfg.PollMax)
	}
}
