package m365sim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Microsoft Defender for Endpoint API (api.securitycenter.microsoft.com),
// served under /api/ on the tenant's origin:
//
//	GET  /api/machines[?$filter=&$top=]           List machines (Machine.Read.All)
//	     https://learn.microsoft.com/defender-endpoint/api/get-machines
//	GET  /api/machines/{id}                        Get machine by id
//	     https://learn.microsoft.com/defender-endpoint/api/get-machine-by-id
//	POST /api/machines/{id}/isolate                Isolate (Machine.Isolate), 201 MachineAction
//	     https://learn.microsoft.com/defender-endpoint/api/isolate-machine
//	POST /api/machines/{id}/unisolate              Release (Machine.Isolate), 201 MachineAction
//	     https://learn.microsoft.com/defender-endpoint/api/unisolate-machine
//	GET  /api/machineactions[?$filter=]            List machine actions (Machine.Read.All)
//	GET  /api/machineactions/{id}                  Get machine action
//	     https://learn.microsoft.com/defender-endpoint/api/get-machineaction-object
//	GET  /api/indicators[?$filter=&$top=]          List indicators (Ti.ReadWrite[.All])
//	     https://learn.microsoft.com/defender-endpoint/api/get-ti-indicators-collection
//	POST /api/indicators                           Submit or update (200 Indicator)
//	     https://learn.microsoft.com/defender-endpoint/api/post-ti-indicator
//	POST /api/indicators/import                    Batch submit, ≤ 500 (Ti.ReadWrite.All)
//	     https://learn.microsoft.com/defender-endpoint/api/import-ti-indicators
//	DELETE /api/indicators/{id}                    204
//	     https://learn.microsoft.com/defender-endpoint/api/delete-ti-indicator-by-id
//
// Every API has its own budget of 100 calls a minute and 1,500 an hour (the
// "Limitations" section of each page above); the import API 30 calls a
// minute; 15,000 active indicators per tenant; "CIDR notation for IPs isn't
// supported" (post-ti-indicator). Past a budget the emulator answers 429 with
// Retry-After (the Defender API's throttling response, as the Microsoft
// "Defender for Endpoint API - throttling" guidance and public client code
// such as Cortex XSOAR's MicrosoftDefenderAdvancedThreatProtection integration
// handle it) while throttling is on (SetThrottling). A machine action starts
// Pending and becomes InProgress and then final on the tenant's clock
// (SetMachineActionTiming; SetMachineActionOutcome for Failed, TimeOut or
// Cancelled); a second isolation while one is pending is refused with 400
// ActiveRequestAlreadyExists [U: the code public clients report].

const (
	defenderResource = "https://api.securitycenter.microsoft.com"
	// defenderAppID is the WindowsDefenderATP service principal's app id.
	defenderAppID = "fc780465-2017-40d4-a0c5-307022471b92"
	// MaxActiveIndicators is the tenant's limit of active indicators.
	MaxActiveIndicators = 15000
	// MaxIndicatorImport is the most indicators one import call takes.
	MaxIndicatorImport = 500
	// ProtectedMachineTag is the machine tag the seeded protected device carries.
	ProtectedMachineTag = "responder-protected"
)

// DefenderLimits are the Defender API budgets, per API.
type DefenderLimits struct {
	PerMinute Limit `json:"per_minute"` // 100 calls a minute
	PerHour   Limit `json:"per_hour"`   // 1,500 calls an hour
	Import    Limit `json:"import"`     // the import API: 30 calls a minute
}

// DefaultDefenderLimits are Microsoft's published budgets.
func DefaultDefenderLimits() DefenderLimits {
	return DefenderLimits{
		PerMinute: Limit{100, time.Minute},
		PerHour:   Limit{1500, time.Hour},
		Import:    Limit{30, time.Minute},
	}
}

// Machine is a Defender for Endpoint device (the fields Responder reads).
type Machine struct {
	ID              string   `json:"id"`
	ComputerDNSName string   `json:"computerDnsName"`
	OSPlatform      string   `json:"osPlatform"`
	AADDeviceID     string   `json:"aadDeviceId,omitempty"`
	MachineTags     []string `json:"machineTags"`
	HealthStatus    string   `json:"healthStatus"`
	LastIPAddress   string   `json:"lastIpAddress,omitempty"`
	RiskScore       string   `json:"riskScore"`
	// Isolated is the emulator's own view of the device (not an API field).
	Isolated bool `json:"-"`
}

// MachineAction is a Defender machine action (isolate, unisolate).
type MachineAction struct {
	ID                    string    `json:"id"`
	Type                  string    `json:"type"`
	Scope                 string    `json:"scope,omitempty"`
	Requestor             string    `json:"requestor"`
	RequestorComment      string    `json:"requestorComment"`
	Status                string    `json:"status"`
	MachineID             string    `json:"machineId"`
	ComputerDNSName       string    `json:"computerDnsName"`
	CreationDateTimeUtc   time.Time `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUtc time.Time `json:"lastUpdateDateTimeUtc"`
	outcome               string
	applied               bool
}

// DefenderIndicator is a Defender indicator.
type DefenderIndicator struct {
	ID                      string     `json:"id"`
	IndicatorValue          string     `json:"indicatorValue"`
	IndicatorType           string     `json:"indicatorType"`
	Action                  string     `json:"action"`
	Application             string     `json:"application,omitempty"`
	Title                   string     `json:"title"`
	Description             string     `json:"description"`
	Severity                string     `json:"severity,omitempty"`
	RecommendedActions      string     `json:"recommendedActions,omitempty"`
	GenerateAlert           bool       `json:"generateAlert"`
	CreatedBy               string     `json:"createdBy"`
	CreatedBySource         string     `json:"createdBySource"`
	CreationTimeDateTimeUtc time.Time  `json:"creationTimeDateTimeUtc"`
	ExpirationTime          *time.Time `json:"expirationTime"`
	LastUpdateTime          time.Time  `json:"lastUpdateTime"`
}

// defender is the tenant's Defender for Endpoint state. The zero value is
// ready; the machines are seeded on first use from the tenant's Seed.
type defender struct {
	mu         sync.Mutex
	seeded     bool
	machines   []*Machine
	actions    []*MachineAction
	indicators map[string]*DefenderIndicator
	nextInd    int
	inProgress time.Duration // after creation, a Pending action is InProgress
	done       time.Duration // after creation, it is final
	outcome    map[string]string
	limits     *DefenderLimits
}

func (t *Tenant) def() *defender {
	d := &t.mde
	if !d.seeded {
		d.seeded = true
		d.indicators = map[string]*DefenderIndicator{}
		d.outcome = map[string]string{}
		d.nextInd = 1000
		if t.opts.Seed != SeedNone {
			d.machines = seedMachines()
		}
	}
	return d
}

// machineID derives a stable 40-hex machine id from a name.
func machineID(name string) string {
	h := sha1.Sum([]byte("machine:" + name))
	return hex.EncodeToString(h[:])
}

func deviceGUID(name string) string {
	h := sha1.Sum([]byte("aad-device:" + name))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// seedMachines is the org's devices: 24 workstations, 5 servers, a domain
// controller, one protected workstation.
func seedMachines() []*Machine {
	var out []*Machine
	add := func(name, platform string, tags ...string) {
		out = append(out, &Machine{ID: machineID(name), ComputerDNSName: name, OSPlatform: platform, AADDeviceID: deviceGUID(name),
			MachineTags: append([]string{}, tags...), HealthStatus: "Active", RiskScore: "Low",
			LastIPAddress: fmt.Sprintf("10.1.%d.%d", len(out)/200, 10+len(out)%200)})
	}
	for i := 1; i <= 24; i++ {
		p := "Windows11"
		if i%3 == 0 {
			p = "Windows10"
		}
		add(fmt.Sprintf("desktop-%02d.contoso.com", i), p)
	}
	add("ceo-laptop.contoso.com", "Windows11", ProtectedMachineTag)
	add("dc01.contoso.com", "WindowsServer2022", "domain-controller")
	add("fs01.contoso.com", "WindowsServer2019")
	add("sql01.contoso.com", "WindowsServer2022")
	add("web01.contoso.com", "WindowsServer2016")
	add("app01.contoso.com", "Linux")
	return out
}

// AddMachine adds (or replaces, by id) a device; an empty ID is derived from
// the name.
func (t *Tenant) AddMachine(m Machine) Machine {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	m.ComputerDNSName = strings.ToLower(m.ComputerDNSName)
	if m.ID == "" {
		m.ID = machineID(m.ComputerDNSName)
	}
	if m.AADDeviceID == "" {
		m.AADDeviceID = deviceGUID(m.ComputerDNSName)
	}
	if m.HealthStatus == "" {
		m.HealthStatus = "Active"
	}
	if m.MachineTags == nil {
		m.MachineTags = []string{}
	}
	c := m
	for i, x := range d.machines {
		if x.ID == m.ID {
			d.machines[i] = &c
			return c
		}
	}
	d.machines = append(d.machines, &c)
	return c
}

// Machines returns the devices.
func (t *Tenant) Machines() []Machine {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	d.settle(t.now())
	out := make([]Machine, len(d.machines))
	for i, m := range d.machines {
		out[i] = *m
		out[i].MachineTags = slices.Clone(m.MachineTags)
	}
	return out
}

// MachineByName returns the device with that id, Entra device id or DNS name.
func (t *Tenant) MachineByName(s string) (Machine, bool) {
	for _, m := range t.Machines() {
		if m.ID == s || strings.EqualFold(m.AADDeviceID, s) || strings.EqualFold(m.ComputerDNSName, s) {
			return m, true
		}
	}
	return Machine{}, false
}

// MachineActions returns every machine action, oldest first.
func (t *Tenant) MachineActions() []MachineAction {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	d.settle(t.now())
	out := make([]MachineAction, len(d.actions))
	for i, a := range d.actions {
		out[i] = *a
	}
	return out
}

// SetMachineActionTiming sets when a machine action becomes InProgress and
// when it is final, after its creation on the tenant's clock (default 0, 0:
// the first read after the request sees it final).
func (t *Tenant) SetMachineActionTiming(inProgress, done time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	d.inProgress, d.done = inProgress, max(done, inProgress)
}

// SetMachineActionOutcome makes the next actions on a device end with status
// (Succeeded, Failed, TimeOut or Cancelled; "" restores Succeeded).
func (t *Tenant) SetMachineActionOutcome(machineID, status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.def().outcome[machineID] = status
}

// SetDefenderLimits replaces the Defender API budgets (buckets start full).
func (t *Tenant) SetDefenderLimits(l DefenderLimits) {
	t.mu.Lock()
	t.def().limits = &l
	t.mu.Unlock()
	t.thr.mu.Lock()
	for k := range t.thr.buckets {
		if strings.HasPrefix(k, "mde/") {
			delete(t.thr.buckets, k)
		}
	}
	t.thr.mu.Unlock()
}

// Indicators returns the active indicators (expired ones are gone).
func (t *Tenant) Indicators() []DefenderIndicator {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	d.expire(t.now())
	out := make([]DefenderIndicator, 0, len(d.indicators))
	for _, i := range d.indicators {
		out = append(out, *i)
	}
	slices.SortFunc(out, func(a, b DefenderIndicator) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// AddIndicator plants an indicator as another app or an analyst in the
// portal would (createdBy is by).
func (t *Tenant) AddIndicator(i DefenderIndicator, by string) DefenderIndicator {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	now := t.now()
	i.ID = strconv.Itoa(d.nextInd)
	d.nextInd++
	i.CreatedBy, i.CreatedBySource = by, "Portal"
	i.CreationTimeDateTimeUtc, i.LastUpdateTime = now, now
	c := i
	d.indicators[c.ID] = &c
	return c
}

// settle moves machine actions along on the clock and applies the final ones.
func (d *defender) settle(now time.Time) {
	for _, a := range d.actions {
		if a.applied {
			continue
		}
		age := now.Sub(a.CreationDateTimeUtc)
		switch {
		case age >= d.done:
			a.Status = firstNonEmpty(a.outcome, "Succeeded")
			a.LastUpdateDateTimeUtc = a.CreationDateTimeUtc.Add(d.done)
			a.applied = true
			if a.Status == "Succeeded" {
				if m := d.machine(a.MachineID); m != nil {
					m.Isolated = a.Type == "Isolate"
				}
			}
		case age >= d.inProgress:
			a.Status = "InProgress"
			a.LastUpdateDateTimeUtc = a.CreationDateTimeUtc.Add(d.inProgress)
		}
	}
}

func (d *defender) expire(now time.Time) {
	for id, i := range d.indicators {
		if i.ExpirationTime != nil && !now.Before(*i.ExpirationTime) {
			delete(d.indicators, id)
		}
	}
}

func (d *defender) machine(id string) *Machine {
	for _, m := range d.machines {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// defenderError is the Defender API's error envelope: {"error":{"code",
// "message","target"}}, target being the request's id.
func defenderError(r *req, status int, code, msg string) *resp {
	return jsonPlain(status, map[string]any{"error": map[string]any{"code": code, "message": msg, "target": r.reqID}})
}

// defenderRoute names a Defender API (its budget) and its permission.
type defenderRoute struct {
	api  string
	need perm
}

func (t *Tenant) defenderAPI(r *req) *resp {
	if a := t.authenticate(r, defenderResource); a != nil {
		return a
	}
	s := r.segs
	n := len(s)
	readMachines := anyOf("Machine.Read.All", "Machine.ReadWrite.All")
	ti := anyOf("Ti.ReadWrite.All", "Ti.ReadWrite")
	var rt defenderRoute
	switch {
	case n == 1 && eq(s[0], "machines") && r.method == http.MethodGet:
		rt = defenderRoute{"machines.list", readMachines}
	case n == 2 && eq(s[0], "machines") && r.method == http.MethodGet:
		rt = defenderRoute{"machines.get", readMachines}
	case n == 3 && eq(s[0], "machines") && eq(s[2], "isolate") && r.method == http.MethodPost:
		rt = defenderRoute{"machines.isolate", anyOf("Machine.Isolate")}
	case n == 3 && eq(s[0], "machines") && eq(s[2], "unisolate") && r.method == http.MethodPost:
		rt = defenderRoute{"machines.unisolate", anyOf("Machine.Isolate")}
	case n == 1 && eq(s[0], "machineactions") && r.method == http.MethodGet:
		rt = defenderRoute{"machineactions.list", readMachines}
	case n == 2 && eq(s[0], "machineactions") && r.method == http.MethodGet:
		rt = defenderRoute{"machineactions.get", readMachines}
	case n == 1 && eq(s[0], "indicators") && r.method == http.MethodGet:
		rt = defenderRoute{"indicators.list", ti}
	case n == 1 && eq(s[0], "indicators") && r.method == http.MethodPost:
		rt = defenderRoute{"indicators.submit", ti}
	case n == 2 && eq(s[0], "indicators") && eq(s[1], "import") && r.method == http.MethodPost:
		// The import page lists only Ti.ReadWrite.All for applications.
		rt = defenderRoute{"indicators.import", anyOf("Ti.ReadWrite.All")}
	case n == 2 && eq(s[0], "indicators") && r.method == http.MethodDelete:
		rt = defenderRoute{"indicators.delete", ti}
	default:
		return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Resource not found: "+r.method+" /api/"+strings.Join(s, "/"))
	}
	if m := rt.need.missing(r.tok.Roles); m != "" {
		return t.forbidden(r, m)
	}
	if res := t.defenderThrottle(r, rt.api); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.def()
	now := t.now()
	d.settle(now)
	d.expire(now)
	switch rt.api {
	case "machines.list":
		return t.listDefender(r, d.machineObjs())
	case "machines.get":
		m := d.machine(s[1])
		if m == nil {
			return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Machine "+s[1]+" was not found")
		}
		return jsonPlain(http.StatusOK, m)
	case "machines.isolate", "machines.unisolate":
		return t.machineAction(r, d, s[1], rt.api == "machines.isolate", now)
	case "machineactions.list":
		objs := make([]map[string]any, 0, len(d.actions))
		for _, a := range d.actions {
			objs = append(objs, defMap(a))
		}
		return t.listDefender(r, objs)
	case "machineactions.get":
		for _, a := range d.actions {
			if a.ID == s[1] {
				return jsonPlain(http.StatusOK, a)
			}
		}
		return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Machine action "+s[1]+" was not found")
	case "indicators.list":
		objs := make([]map[string]any, 0, len(d.indicators))
		own := !slices.Contains(r.tok.Roles, "Ti.ReadWrite.All")
		for _, i := range d.indicatorsSorted() {
			// Ti.ReadWrite exposes only the app's own indicators
			// (get-ti-indicators-collection, Note).
			if own && !strings.EqualFold(i.CreatedBy, r.tok.AppID) {
				continue
			}
			objs = append(objs, defMap(i))
		}
		return t.listDefender(r, objs)
	case "indicators.submit":
		var in map[string]any
		if err := json.Unmarshal(r.body, &in); err != nil {
			return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", "Request body is not valid JSON")
		}
		ind, why := d.submit(in, r.tok.AppID, now)
		if why != "" {
			return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", why)
		}
		return jsonPlain(http.StatusOK, ind)
	case "indicators.import":
		var in struct {
			Indicators []map[string]any `json:"Indicators"`
		}
		if err := json.Unmarshal(r.body, &in); err != nil || len(in.Indicators) == 0 {
			return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", "Request body must be {\"Indicators\":[…]}")
		}
		if len(in.Indicators) > MaxIndicatorImport {
			return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", fmt.Sprintf("The maximum batch size for one API call is %d", MaxIndicatorImport))
		}
		out := make([]map[string]any, 0, len(in.Indicators))
		for _, x := range in.Indicators {
			v, _ := x["indicatorValue"].(string)
			ind, why := d.submit(x, r.tok.AppID, now)
			if why != "" {
				out = append(out, map[string]any{"id": nil, "indicator": v, "isFailed": true, "failureReason": why})
				continue
			}
			out = append(out, map[string]any{"id": ind.ID, "indicator": v, "isFailed": false, "failureReason": nil})
		}
		return jsonPlain(http.StatusOK, map[string]any{"value": out})
	case "indicators.delete":
		i := d.indicators[s[1]]
		if i == nil {
			return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Indicator "+s[1]+" was not found")
		}
		if !slices.Contains(r.tok.Roles, "Ti.ReadWrite.All") && !strings.EqualFold(i.CreatedBy, r.tok.AppID) {
			return defenderError(r, http.StatusForbidden, "Forbidden", "Ti.ReadWrite allows only the indicators the application created")
		}
		delete(d.indicators, s[1])
		return noContent()
	}
	return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Resource not found")
}

func eq(a, b string) bool { return strings.EqualFold(a, b) }

func defMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (d *defender) machineObjs() []map[string]any {
	out := make([]map[string]any, len(d.machines))
	for i, m := range d.machines {
		out[i] = defMap(m)
	}
	return out
}

func (d *defender) indicatorsSorted() []*DefenderIndicator {
	out := make([]*DefenderIndicator, 0, len(d.indicators))
	for _, i := range d.indicators {
		out = append(out, i)
	}
	slices.SortFunc(out, func(a, b *DefenderIndicator) int {
		x, _ := strconv.Atoi(a.ID)
		y, _ := strconv.Atoi(b.ID)
		return x - y
	})
	return out
}

// listDefender answers a collection with $filter (OData, as Graph's) and
// $top (at most 10,000, get-machines).
func (t *Tenant) listDefender(r *req, objs []map[string]any) *resp {
	if f := r.q("$filter"); f != "" {
		n, err := parseFilter(f)
		if err != nil {
			return defenderError(r, http.StatusBadRequest, "InvalidRequest", "Invalid filter clause: "+err.Error())
		}
		var kept []map[string]any
		for _, o := range objs {
			ok, err := matches(n, o)
			if err != nil {
				return defenderError(r, http.StatusBadRequest, "InvalidRequest", "Invalid filter clause: "+err.Error())
			}
			if ok {
				kept = append(kept, o)
			}
		}
		objs = kept
	}
	if s := r.q("$top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 10000 {
			return defenderError(r, http.StatusBadRequest, "InvalidRequest", "$top must be between 0 and 10000")
		}
		if n < len(objs) {
			objs = objs[:n]
		}
	}
	if objs == nil {
		objs = []map[string]any{}
	}
	return jsonPlain(http.StatusOK, map[string]any{"@odata.context": t.base + "/api/$metadata#" + r.segs[0], "value": objs})
}

// machineAction creates an Isolate or Unisolate action (201, Pending).
func (t *Tenant) machineAction(r *req, d *defender, id string, isolate bool, now time.Time) *resp {
	m := d.machine(id)
	if m == nil {
		return defenderError(r, http.StatusNotFound, "ResourceNotFound", "Machine "+id+" was not found")
	}
	var in struct {
		Comment       string `json:"Comment"`
		IsolationType string `json:"IsolationType"`
	}
	if err := json.Unmarshal(r.body, &in); err != nil || strings.TrimSpace(in.Comment) == "" {
		// isolate-machine: Comment is required.
		return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", "Comment is required")
	}
	typ, scope := "Unisolate", ""
	if isolate {
		typ, scope = "Isolate", "Full"
		switch in.IsolationType {
		case "", "Full":
		case "Selective":
			scope = "Selective"
			// Selective isolation: Windows 10 1709 or later and Windows 11
			// (isolate-machine, Important).
			if !strings.HasPrefix(m.OSPlatform, "Windows1") {
				return defenderError(r, http.StatusBadRequest, "InvalidRequest", "Selective isolation is not supported on "+m.OSPlatform)
			}
		default:
			return defenderError(r, http.StatusBadRequest, "InvalidRequestBody", "IsolationType must be Full or Selective")
		}
	}
	for _, a := range d.actions {
		if a.MachineID == id && (a.Status == "Pending" || a.Status == "InProgress") && (a.Type == "Isolate" || a.Type == "Unisolate") {
			return defenderError(r, http.StatusBadRequest, "ActiveRequestAlreadyExists", "Action is already in progress")
		}
	}
	a := &MachineAction{ID: newGUID(), Type: typ, Scope: scope, Requestor: r.tok.AppID, RequestorComment: in.Comment,
		Status: "Pending", MachineID: id, ComputerDNSName: m.ComputerDNSName, CreationDateTimeUtc: now, LastUpdateDateTimeUtc: now,
		outcome: d.outcome[id]}
	d.actions = append(d.actions, a)
	// The action moves on at the next read (settle), never on a timer, so
	// that tests drive it with the tenant's clock.
	return jsonPlain(http.StatusCreated, a)
}

var (
	hex64 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	hex40 = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	hex32 = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
)

// submit validates and stores (or updates) one indicator; why is the 400
// message. Rules: post-ti-indicator (required fields, enums, no CIDR), the
// 15,000 active indicator limit.
func (d *defender) submit(in map[string]any, appID string, now time.Time) (*DefenderIndicator, string) {
	str := func(k string) string { s, _ := in[k].(string); return strings.TrimSpace(s) }
	v, typ, action := str("indicatorValue"), str("indicatorType"), str("action")
	if v == "" || typ == "" || action == "" || str("title") == "" || str("description") == "" {
		return nil, "indicatorValue, indicatorType, action, title and description are required"
	}
	switch typ {
	case "FileSha256":
		if !hex64.MatchString(v) {
			return nil, "Invalid FileSha256 value: " + v
		}
	case "FileSha1", "CertificateThumbprint":
		if !hex40.MatchString(v) {
			return nil, "Invalid " + typ + " value: " + v
		}
	case "FileMd5":
		if !hex32.MatchString(v) {
			return nil, "Invalid FileMd5 value: " + v
		}
	case "IpAddress":
		if strings.Contains(v, "/") {
			return nil, "CIDR notation for IPs isn't supported: " + v
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return nil, "Invalid IpAddress value: " + v
		}
	case "Url":
		u, err := url.Parse(v)
		if err != nil || u.Host == "" && !strings.Contains(v, ".") {
			return nil, "Invalid Url value: " + v
		}
	case "DomainName":
		if strings.ContainsAny(v, "/*: ") || !strings.Contains(v, ".") {
			return nil, "Invalid DomainName value: " + v
		}
	default:
		return nil, "Invalid indicatorType: " + typ
	}
	switch action {
	case "Alert", "Warn", "Block", "Audit", "BlockAndRemediate", "AlertAndBlock", "Allowed":
	default:
		return nil, "Invalid action: " + action
	}
	var exp *time.Time
	if s := str("expirationTime"); s != "" {
		e, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, "Invalid expirationTime: " + s
		}
		if !e.After(now) {
			return nil, "expirationTime must be in the future"
		}
		e = e.UTC()
		exp = &e
	}
	var cur *DefenderIndicator
	for _, i := range d.indicators {
		if strings.EqualFold(i.IndicatorValue, v) && i.IndicatorType == typ {
			cur = i
		}
	}
	if cur == nil && len(d.indicators) >= MaxActiveIndicators {
		return nil, fmt.Sprintf("The tenant has reached the limit of %d active indicators", MaxActiveIndicators)
	}
	ind := &DefenderIndicator{IndicatorValue: v, IndicatorType: typ, Action: action, Application: str("application"),
		Title: str("title"), Description: str("description"), Severity: str("severity"), RecommendedActions: str("recommendedActions"),
		CreatedBy: appID, CreatedBySource: "PublicApi", CreationTimeDateTimeUtc: now, ExpirationTime: exp, LastUpdateTime: now}
	ind.GenerateAlert, _ = in["generateAlert"].(bool)
	if cur != nil {
		// Submit or update: the same value and type update the indicator.
		ind.ID, ind.CreationTimeDateTimeUtc, ind.CreatedBy = cur.ID, cur.CreationTimeDateTimeUtc, cur.CreatedBy
	} else {
		ind.ID = strconv.Itoa(d.nextInd)
		d.nextInd++
	}
	d.indicators[ind.ID] = ind
	c := *ind
	return &c, ""
}

// defenderThrottle applies the API's budgets: 100 a minute and 1,500 an hour
// per API, 30 a minute for the import; past them 429 with Retry-After.
func (t *Tenant) defenderThrottle(r *req, api string) *resp {
	t.mu.Lock()
	l := DefaultDefenderLimits()
	if p := t.def().limits; p != nil {
		l = *p
	}
	t.mu.Unlock()
	th := t.thr
	th.mu.Lock()
	defer th.mu.Unlock()
	if !th.on {
		return nil
	}
	var ok bool
	var wait time.Duration
	if api == "indicators.import" {
		ok, wait = th.take("mde/"+api+"/m", l.Import, 1)
	} else {
		// Both budgets must allow the call; take from the hour only once the
		// minute allows it.
		if ok, wait = th.take("mde/"+api+"/m", l.PerMinute, 1); ok {
			if ok, wait = th.take("mde/"+api+"/h", l.PerHour, 1); !ok {
				th.buckets["mde/"+api+"/m"].tokens++ // give the minute's token back
			}
		}
	}
	if ok {
		return nil
	}
	res := defenderError(r, http.StatusTooManyRequests, "TooManyRequests", "Rate limit is exceeded. Try again in "+retrySeconds(wait)+" seconds.")
	res.hdr.Set("Retry-After", retrySeconds(wait))
	return res
}

// defenderAdmin serves the Defender knobs of the admin API:
//
//	GET  /_sim/defender/machines            Machines
//	POST /_sim/defender/machines            AddMachine (Machine JSON)
//	GET  /_sim/defender/machineactions      MachineActions
//	GET  /_sim/defender/indicators          Indicators (active)
//	PUT  /_sim/defender/timing              {"in_progress_after":ns,"done_after":ns}
//	PUT  /_sim/defender/outcome             {"machine_id":"…","status":"Failed"}
//	PUT  /_sim/defender/limits              DefenderLimits JSON
func (t *Tenant) defenderAdmin(r *req, j func(int, any) *resp, bad func(string) *resp, decode func(any) bool) *resp {
	path := strings.Join(r.segs, "/")
	if !strings.HasPrefix(path, "defender/") {
		return nil
	}
	switch sub := strings.TrimPrefix(path, "defender/"); {
	case r.method == http.MethodGet && sub == "machines":
		return j(http.StatusOK, t.Machines())
	case r.method == http.MethodPost && sub == "machines":
		var m Machine
		if !decode(&m) || m.ComputerDNSName == "" {
			return bad("body must be a Machine with computerDnsName")
		}
		return j(http.StatusCreated, t.AddMachine(m))
	case r.method == http.MethodGet && sub == "machineactions":
		return j(http.StatusOK, t.MachineActions())
	case r.method == http.MethodGet && sub == "indicators":
		return j(http.StatusOK, t.Indicators())
	case r.method == http.MethodPut && sub == "timing":
		var b struct {
			InProgress time.Duration `json:"in_progress_after"`
			Done       time.Duration `json:"done_after"`
		}
		if !decode(&b) {
			return bad(`body must be {"in_progress_after":ns,"done_after":ns}`)
		}
		t.SetMachineActionTiming(b.InProgress, b.Done)
		return noContent()
	case r.method == http.MethodPut && sub == "outcome":
		var b struct {
			MachineID string `json:"machine_id"`
			Status    string `json:"status"`
		}
		if !decode(&b) || b.MachineID == "" {
			return bad(`body must be {"machine_id":"…","status":"Failed|TimeOut|Cancelled|"}`)
		}
		t.SetMachineActionOutcome(b.MachineID, b.Status)
		return noContent()
	case r.method == http.MethodPut && sub == "limits":
		var l DefenderLimits
		if !decode(&l) {
			return bad("body must be DefenderLimits")
		}
		t.SetDefenderLimits(l)
		return noContent()
	}
	return nil
}
