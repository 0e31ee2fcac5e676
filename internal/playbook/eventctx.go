package playbook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

// maxEmbeddedJSON bounds the size of a JSON-in-a-string value that a path or
// helper decodes (RuleActions, additionalInfo).
const maxEmbeddedJSON = 64 << 10

// evalCtx is one event as the conditions see it. It is built per Match call and
// caches what it derives, so it is never shared between goroutines.
type evalCtx struct {
	env     *event.Envelope
	set     *Set
	raw     any
	rawErr  error
	helpers map[string]any
	exprEnv map[string]any
}

func newEvalCtx(s *Set, env *event.Envelope) *evalCtx {
	c := &evalCtx{env: env, set: s}
	if len(bytes.TrimSpace(env.Raw)) > 0 {
		if err := json.Unmarshal(env.Raw, &c.raw); err != nil {
			c.rawErr = fmt.Errorf("playbook: event %s: raw record is not JSON: %w", env.ID, err)
			c.raw = nil
		}
	}
	c.raw = unwrapRecord(c.raw)
	return c
}

// unwrapRecord looks through the wrappers some exports put around a Microsoft
// record, so that raw.<path> always addresses the record itself: an Azure Monitor
// diagnostic-settings envelope ({time, category, properties}) and a Graph audit
// log query record ({…, auditData}).
func unwrapRecord(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if props, ok := m["properties"].(map[string]any); ok {
		if cat, _ := m["category"].(string); cat != "" {
			return props
		}
	}
	if ad, ok := m["auditData"].(map[string]any); ok {
		if _, ok := ad["CreationTime"]; ok {
			return ad
		}
	}
	return v
}

// envValue returns an envelope field as a string ("" when unset).
func envValue(env *event.Envelope, name string) string {
	switch name {
	case "id":
		return env.ID
	case "source":
		return string(env.Source)
	case "kind":
		return env.Kind
	case "time":
		if env.Time.IsZero() {
			return ""
		}
		return env.Time.UTC().Format(time.RFC3339Nano)
	case "tenant_id":
		return env.TenantID
	case "user":
		return env.User
	case "user_id":
		return env.UserID
	case "ip":
		return env.IP
	}
	return ""
}

// resolve returns the value of r for this event; elem is the current list
// element inside any/all. ok is false when the field is absent.
func (c *evalCtx) resolve(r ref, elem any) (any, bool) {
	switch {
	case r.root == rootElem:
		if len(r.path) == 0 {
			return elem, true
		}
		return walk(elem, r.path)
	case r.root == rootRaw:
		if c.raw == nil {
			return nil, false
		}
		if len(r.path) == 0 {
			return c.raw, true
		}
		return walk(c.raw, r.path)
	case helperFields[r.root]:
		return c.helper(r.root), true
	case envFields[r.root]:
		v := envValue(c.env, r.root)
		if v == "" {
			return nil, false
		}
		return v, true
	}
	return nil, false
}

func (c *evalCtx) helper(name string) any {
	if v, ok := c.helpers[name]; ok {
		return v
	}
	if c.helpers == nil {
		c.helpers = map[string]any{}
	}
	var out []any
	switch name {
	case helperForwardRecipients:
		for _, r := range ForwardRecipients(c.env) {
			out = append(out, r)
		}
	case helperExternalRecipients:
		for _, r := range ForwardRecipients(c.env) {
			if c.set.isExternal(r, c.env.User) {
				out = append(out, r)
			}
		}
	}
	if out == nil {
		out = []any{}
	}
	c.helpers[name] = out
	return out
}

// decodeEmbedded decodes a string that holds a JSON object or array.
func decodeEmbedded(s string) (any, bool) {
	t := strings.TrimSpace(s)
	if len(t) < 2 || len(t) > maxEmbeddedJSON || (t[0] != '[' && t[0] != '{') {
		return nil, false
	}
	var v any
	if err := json.Unmarshal([]byte(t), &v); err != nil {
		return nil, false
	}
	return v, true
}

// scalarString renders a scalar as the string conditions compare; ok is false
// for null, lists and objects.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case int:
		return strconv.Itoa(t), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case uint64:
		return strconv.FormatUint(t, 10), true
	}
	return "", false
}

// number parses a scalar as a number.
func number(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint64:
		return float64(t), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		return f, err == nil
	}
	return 0, false
}

// parseIP accepts the spellings Microsoft uses: bare v4/v6, v4:port, [v6]:port,
// ::ffff:v4 (unmapped to v4), and v6 zones are refused.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return parseIP(s[1 : len(s)-1])
	}
	return netip.Addr{}, false
}
