package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

var (
	permCARead  = anyOf("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")
	permCAWrite = perm{allOf: []string{"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"}}
)

// Microsoft's Conditional Access limits.
const (
	maxNamedLocations   = 195
	maxRangesPerLoc     = 2000
	minPrefixExclusive  = 8
	namedLocationsCtx   = "identity/conditionalAccess/namedLocations"
	policiesCtx         = "identity/conditionalAccess/policies"
	ipNamedLocationType = "#microsoft.graph.ipNamedLocation"
	countryLocationType = "#microsoft.graph.countryNamedLocation"
)

func caRoutes() []route {
	const nl = "identity/conditionalAccess/namedLocations"
	const po = "identity/conditionalAccess/policies"
	return []route{
		{http.MethodGet, nl, permCARead, thrIdPCA, (*Tenant).listNamedLocations},
		{http.MethodPost, nl, permCAWrite, thrIdPCA, (*Tenant).createNamedLocation},
		{http.MethodGet, nl + "/{}", permCARead, thrIdPCA, (*Tenant).getNamedLocation},
		{http.MethodPatch, nl + "/{}", permCAWrite, thrIdPCA, (*Tenant).updateNamedLocation},
		{http.MethodDelete, nl + "/{}", permCAWrite, thrIdPCA, (*Tenant).deleteNamedLocation},
		{http.MethodGet, po, permCARead, thrIdPCA, (*Tenant).listPolicies},
		{http.MethodPost, po, permCAWrite, thrIdPCA, (*Tenant).createPolicy},
		{http.MethodGet, po + "/{}", permCARead, thrIdPCA, (*Tenant).getPolicy},
		{http.MethodPatch, po + "/{}", permCAWrite, thrIdPCA, (*Tenant).updatePolicy},
		{http.MethodDelete, po + "/{}", permCAWrite, thrIdPCA, (*Tenant).deletePolicy},
	}
}

func (t *Tenant) caBad(r *req, msg string) *resp {
	return t.graphError(r, http.StatusBadRequest, "BadRequest", msg)
}

func (t *Tenant) caNotFound(r *req, id string) *resp {
	return t.graphError(r, http.StatusNotFound, "NotFound", fmt.Sprintf("The object with id '%s' was not found.", id))
}

// validLocation checks a named-location body against Microsoft's rules.
func (t *Tenant) validLocation(r *req, o map[string]any, create bool) *resp {
	typ := str(o, "@odata.type")
	if typ == "" {
		return t.caBad(r, "The request body must contain '@odata.type' for a named location (e.g. '#microsoft.graph.ipNamedLocation').")
	}
	if typ != ipNamedLocationType && typ != countryLocationType {
		return t.caBad(r, fmt.Sprintf("Invalid '@odata.type' value '%s' for a named location.", typ))
	}
	if create && strings.TrimSpace(str(o, "displayName")) == "" {
		return t.caBad(r, "The 'displayName' property is required.")
	}
	if typ == ipNamedLocationType {
		raw, present := o["ipRanges"]
		rs, _ := raw.([]any)
		// ipRanges is required (https://learn.microsoft.com/graph/api/resources/ipnamedlocation)
		// and a PATCH replaces the whole collection, so an update may not
		// empty it either.
		if (create && !present) || (present && len(rs) == 0) {
			return t.caBad(r, "An IP named location must contain at least one IP range.")
		}
		if len(rs) > maxRangesPerLoc {
			return t.caBad(r, fmt.Sprintf("A named location can contain at most %d IP ranges; the request has %d.", maxRangesPerLoc, len(rs)))
		}
		for _, x := range rs {
			m, _ := x.(map[string]any)
			rt := str(m, "@odata.type")
			cidr := str(m, "cidrAddress")
			if rt != "#microsoft.graph.iPv4CidrRange" && rt != "#microsoft.graph.iPv6CidrRange" {
				return t.caBad(r, fmt.Sprintf("Each IP range must carry '@odata.type' '#microsoft.graph.iPv4CidrRange' or '#microsoft.graph.iPv6CidrRange' (range '%s').", cidr))
			}
			pfx, err := netip.ParsePrefix(cidr)
			if err != nil {
				return t.caBad(r, fmt.Sprintf("'%s' is not a valid CIDR address.", cidr))
			}
			if pfx.Addr().Is4() != (rt == "#microsoft.graph.iPv4CidrRange") {
				return t.caBad(r, fmt.Sprintf("The range '%s' does not match its type '%s'.", cidr, rt))
			}
			if pfx.Bits() <= minPrefixExclusive {
				return t.caBad(r, fmt.Sprintf("The IP range '%s' is too broad: network masks must be greater than /%d.", cidr, minPrefixExclusive))
			}
			if res := privateRange(pfx); res != "" {
				return t.caBad(r, fmt.Sprintf("The IP range '%s' is not allowed: it overlaps the %s range %s; named locations take public IP ranges only.", cidr, nonPublic[res], res))
			}
		}
	}
	return nil
}

// nonPublic are the ranges an IP named location refuses. Entra's location
// condition took "public IP ranges" only ("Private IP ranges can't be
// configured": https://learn.microsoft.com/entra/identity/conditional-access/location-condition,
// IP address ranges; the sentence left the page in 2023,
// https://github.com/MicrosoftDocs/azure-docs/pull/107223, while the page
// still speaks of public ranges). Private (RFC 1918, RFC 4193), loopback,
// link-local, unspecified, shared (RFC 6598) and multicast space never reach
// Entra as a sign-in's address. Entra's wording of the refusal is not
// captured publicly: the message below is ours, the status and code are
// Graph's generic 400 BadRequest.
var nonPublic = map[string]string{
	"10.0.0.0/8": "private", "172.16.0.0/12": "private", "192.168.0.0/16": "private", "127.0.0.0/8": "loopback",
	"169.254.0.0/16": "link-local", "0.0.0.0/8": "unspecified", "100.64.0.0/10": "shared (carrier-grade NAT)",
	"224.0.0.0/4": "multicast", "240.0.0.0/4": "reserved",
	"fc00::/7": "private (unique local)", "fe80::/10": "link-local", "::1/128": "loopback", "::/128": "unspecified", "ff00::/8": "multicast",
}

// privateRange returns the non-public range pfx overlaps, or "".
func privateRange(pfx netip.Prefix) string {
	for _, k := range sortedKeys(nonPublic) {
		if netip.MustParsePrefix(k).Overlaps(pfx.Masked()) {
			return k
		}
	}
	return ""
}

func (t *Tenant) listNamedLocations(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.namedLocations))
	for _, o := range t.st.namedLocations {
		items = append(items, &item{obj: cloneObj(o)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: namedLocationsCtx, defTop: 100, maxTop: 999, schema: namedLocationSchema()})
}

func (t *Tenant) createNamedLocation(r *req, _ []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	if res := t.validLocation(r, body, true); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.st.namedLocations) >= maxNamedLocations {
		return t.caBad(r, fmt.Sprintf("The tenant has reached the limit of %d named locations.", maxNamedLocations))
	}
	o := cloneObj(body)
	now := graphTime(t.now())
	o["id"] = newGUID()
	o["createdDateTime"] = now
	o["modifiedDateTime"] = now
	if str(o, "@odata.type") == ipNamedLocationType {
		if _, ok := o["isTrusted"]; !ok {
			o["isTrusted"] = false
		}
	}
	t.st.namedLocations = append(t.st.namedLocations, o)
	out := cloneObj(o)
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/namedLocations/$entity"
	return jsonResp(http.StatusCreated, out)
}

func findByID(list []map[string]any, id string) int {
	for i, o := range list {
		if strings.EqualFold(str(o, "id"), id) {
			return i
		}
	}
	return -1
}

func (t *Tenant) getNamedLocation(r *req, p []string) *resp {
	if res := t.checkQuery(r, namedLocationSchema()); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.namedLocations, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	out := cloneObj(t.st.namedLocations[i])
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/namedLocations/$entity"
	return jsonResp(http.StatusOK, out)
}

func (t *Tenant) updateNamedLocation(r *req, p []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	if res := t.validLocation(r, body, false); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.namedLocations, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	o := t.st.namedLocations[i]
	if str(o, "@odata.type") != str(body, "@odata.type") {
		return t.caBad(r, "The '@odata.type' of a named location cannot be changed.")
	}
	for k, v := range body {
		if k == "id" || k == "createdDateTime" {
			continue
		}
		o[k] = v // collections (ipRanges) are replaced whole
	}
	o["modifiedDateTime"] = graphTime(t.now())
	return noContent()
}

func (t *Tenant) deleteNamedLocation(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.namedLocations, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	id := str(t.st.namedLocations[i], "id")
	for _, po := range t.st.policies {
		if policyUsesLocation(po, id) {
			return t.caBad(r, fmt.Sprintf("The named location '%s' is referenced by policy '%s' and cannot be deleted.", id, str(po, "id")))
		}
	}
	t.st.namedLocations = append(t.st.namedLocations[:i], t.st.namedLocations[i+1:]...)
	return noContent()
}

func policyLocations(po map[string]any) []string {
	c, _ := po["conditions"].(map[string]any)
	l, _ := c["locations"].(map[string]any)
	var out []string
	for _, k := range []string{"includeLocations", "excludeLocations"} {
		xs, _ := l[k].([]any)
		for _, x := range xs {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func policyUsesLocation(po map[string]any, id string) bool {
	for _, l := range policyLocations(po) {
		if strings.EqualFold(l, id) {
			return true
		}
	}
	return false
}

var policyStates = map[string]bool{"enabled": true, "disabled": true, "enabledForReportingButNotEnforced": true}

func (t *Tenant) validPolicyLocked(r *req, o map[string]any, create bool) *resp {
	if create && strings.TrimSpace(str(o, "displayName")) == "" {
		return t.caBad(r, "The 'displayName' property is required.")
	}
	if s, ok := o["state"]; ok || create {
		st, _ := s.(string)
		if !policyStates[st] {
			return t.caBad(r, fmt.Sprintf("Invalid value '%v' for property 'state'.", s))
		}
	}
	if create {
		if _, ok := o["conditions"].(map[string]any); !ok {
			return t.caBad(r, "The 'conditions' property is required.")
		}
		_, g := o["grantControls"].(map[string]any)
		_, s := o["sessionControls"].(map[string]any)
		if !g && !s {
			return t.caBad(r, "A policy must have grant controls or session controls.")
		}
	}
	for _, l := range policyLocations(o) {
		if l == "All" || l == "AllTrusted" || l == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		if findByID(t.st.namedLocations, l) < 0 {
			return t.caBad(r, fmt.Sprintf("1040: The named location '%s' referenced by the policy does not exist.", l))
		}
	}
	return nil
}

func (t *Tenant) listPolicies(r *req, _ []string) *resp {
	t.mu.Lock()
	items := make([]*item, 0, len(t.st.policies))
	for _, o := range t.st.policies {
		items = append(items, &item{obj: cloneObj(o)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: policiesCtx, defTop: 100, maxTop: 999, schema: caPolicySchema()})
}

func (t *Tenant) createPolicy(r *req, _ []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if res := t.validPolicyLocked(r, body, true); res != nil {
		return res
	}
	o := cloneObj(body)
	delete(o, "@odata.type")
	now := graphTime(t.now())
	o["id"] = newGUID()
	o["createdDateTime"] = now
	o["modifiedDateTime"] = nil
	t.st.policies = append(t.st.policies, o)
	out := cloneObj(o)
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/policies/$entity"
	return jsonResp(http.StatusCreated, out)
}

func (t *Tenant) getPolicy(r *req, p []string) *resp {
	if res := t.checkQuery(r, caPolicySchema()); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.policies, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	out := cloneObj(t.st.policies[i])
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/policies/$entity"
	return jsonResp(http.StatusOK, out)
}

func (t *Tenant) updatePolicy(r *req, p []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.policies, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	if res := t.validPolicyLocked(r, body, false); res != nil {
		return res
	}
	for k, v := range body {
		if k == "id" || k == "@odata.type" || k == "createdDateTime" {
			continue
		}
		t.st.policies[i][k] = v
	}
	t.st.policies[i]["modifiedDateTime"] = graphTime(t.now())
	return noContent()
}

func (t *Tenant) deletePolicy(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := findByID(t.st.policies, p[0])
	if i < 0 {
		return t.caNotFound(r, p[0])
	}
	t.st.policies = append(t.st.policies[:i], t.st.policies[i+1:]...)
	return noContent()
}

// NamedLocations returns copies of the named locations.
func (t *Tenant) NamedLocations() []map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]map[string]any, 0, len(t.st.namedLocations))
	for _, o := range t.st.namedLocations {
		out = append(out, cloneObj(o))
	}
	return out
}

// Policies returns copies of the Conditional Access policies.
func (t *Tenant) Policies() []map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]map[string]any, 0, len(t.st.policies))
	for _, o := range t.st.policies {
		out = append(out, cloneObj(o))
	}
	return out
}

// AddRawNamedLocation stores a Graph namedLocation as given (no validation).
func (t *Tenant) AddRawNamedLocation(raw json.RawMessage) error {
	m := decodeObj(raw)
	if m == nil {
		return fmt.Errorf("m365sim: named location is not a JSON object")
	}
	if str(m, "id") == "" {
		m["id"] = newGUID()
	}
	t.mu.Lock()
	t.st.namedLocations = append(t.st.namedLocations, m)
	t.mu.Unlock()
	return nil
}

// AddRawPolicy stores a Graph conditionalAccessPolicy as given.
func (t *Tenant) AddRawPolicy(raw json.RawMessage) error {
	m := decodeObj(raw)
	if m == nil {
		return fmt.Errorf("m365sim: policy is not a JSON object")
	}
	if str(m, "id") == "" {
		m["id"] = newGUID()
	}
	t.mu.Lock()
	t.st.policies = append(t.st.policies, m)
	t.mu.Unlock()
	return nil
}
