package m365sim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The admin API lives under /_sim/, a path no Microsoft client uses. It is
// unauthenticated (loopback only) and mirrors the Go API:
//
//	GET    /_sim/info                       Info
//	POST   /_sim/users                      AddUser (User JSON)
//	GET    /_sim/users/{idOrUPN}            User
//	POST   /_sim/apps                       AddApp (App JSON)
//	PUT    /_sim/apps/{clientId}/roles      SetRoles (["Role", …])
//	POST   /_sim/tokens/expire              ExpireTokens
//	POST   /_sim/faults                     AddFault (Fault JSON; durations in ns) → {"id":n}
//	DELETE /_sim/faults/{id} | /_sim/faults remove one | all
//	GET    /_sim/wirelog   DELETE /_sim/wirelog
//	POST   /_sim/throttling {"enabled":bool}  PUT /_sim/limits (Limits JSON)
//	POST   /_sim/inject/riskDetection       InjectRiskDetection
//	(further injection routes: see adminMore)
func (t *Tenant) admin(r *req) *resp {
	s := r.segs
	j := func(status int, v any) *resp {
		res := newResp(status)
		res.body = mustJSON(v)
		res.hdr.Set("Content-Type", "application/json")
		return res
	}
	bad := func(msg string) *resp { return t.errorFor(r, http.StatusBadRequest, "BadRequest", msg) }
	decode := func(v any) bool { return json.Unmarshal(r.body, v) == nil }
	path := strings.Join(s, "/")
	switch {
	case r.method == http.MethodGet && path == "info":
		return j(200, t.Info())
	case r.method == http.MethodPost && path == "users":
		var u User
		if !decode(&u) || u.UserPrincipalName == "" {
			return bad("body must be a User with userPrincipalName")
		}
		return j(201, t.AddUser(u))
	case r.method == http.MethodGet && len(s) == 2 && s[0] == "users":
		u, ok := t.User(s[1])
		if !ok {
			return t.errorFor(r, 404, "NotFound", "no such user")
		}
		return j(200, u)
	case r.method == http.MethodGet && path == "users":
		return j(200, t.Users())
	case r.method == http.MethodPost && path == "apps":
		var a App
		if !decode(&a) {
			return bad("body must be an App")
		}
		return j(201, t.AddApp(a))
	case r.method == http.MethodPut && len(s) == 3 && s[0] == "apps" && s[2] == "roles":
		var roles []string
		if !decode(&roles) {
			return bad("body must be a JSON array of role names")
		}
		t.SetRoles(s[1], roles)
		return noContent()
	case r.method == http.MethodPost && path == "tokens/expire":
		t.ExpireTokens()
		return noContent()
	case r.method == http.MethodPost && path == "faults":
		var f Fault
		if !decode(&f) {
			return bad("body must be a Fault")
		}
		return j(201, map[string]int{"id": t.addFault(f)})
	case r.method == http.MethodDelete && path == "faults":
		t.ClearFaults()
		return noContent()
	case r.method == http.MethodDelete && len(s) == 2 && s[0] == "faults":
		id, err := strconv.Atoi(s[1])
		if err != nil || !t.removeFault(id) {
			return t.errorFor(r, 404, "NotFound", "no such fault")
		}
		return noContent()
	case r.method == http.MethodGet && path == "wirelog":
		return j(200, t.WireLog())
	case r.method == http.MethodDelete && path == "wirelog":
		t.ResetWireLog()
		return noContent()
	case r.method == http.MethodPost && path == "throttling":
		var b struct {
			Enabled bool `json:"enabled"`
		}
		if !decode(&b) {
			return bad(`body must be {"enabled":bool}`)
		}
		t.SetThrottling(b.Enabled)
		return noContent()
	case r.method == http.MethodGet && path == "limits":
		return j(200, t.CurrentLimits())
	case r.method == http.MethodPut && path == "limits":
		var l Limits
		if !decode(&l) {
			return bad("body must be Limits")
		}
		t.SetLimits(l)
		return noContent()
	case r.method == http.MethodPost && path == "inject/riskDetection":
		var d RiskDetection
		if !decode(&d) {
			return bad("body must be a RiskDetection")
		}
		return j(201, t.InjectRiskDetection(d))
	}
	if res := t.defenderAdmin(r, j, bad, decode); res != nil {
		return res
	}
	if res := t.adminMore(r, j, bad, decode); res != nil {
		return res
	}
	return t.errorFor(r, http.StatusNotFound, "NotFound", "unknown admin route "+r.method+" /_sim/"+path)
}
