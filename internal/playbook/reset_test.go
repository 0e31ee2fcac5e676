package playbook

import (
	"context"
	"reflect"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// TestResetClears: after reset, every field of the evalCtx is what a fresh
// context has for the new event, except the buffers, memo and caches kept
// across events on purpose (their contents are cleared or made stale).
// A field added to evalCtx fails here until reset handles it.
func TestResetClears(t *testing.T) {
	kept := map[string]bool{
		"memberBuf": true, "innerBuf": true, "memo": true, "refMemo": true, "memberMemo": true, "matchMemo": true,
		"memoUsed": true, "refUsed": true, "keyNodes": true, "keyTab": true, "gen": true, "valBuf": true,
		"virtBuf": true, "leafBuf": true, "lowBuf": true, "reasons": true, "users": true, "hitBuf": true,
	}
	set := loadShipped(t).WithAllEnabled()
	raw := []byte(`{"id":"1","riskLevel":"high","riskState":"atRisk","userPrincipalName":"a@contoso.com","ipAddress":"203.0.113.9","additionalInfo":"[{\"Key\":\"userAgent\",\"Value\":\"x\"}]"}`)
	env := &event.Envelope{ID: "e1", Source: event.SourceRiskDetection, Kind: "anonymizedIPAddress", User: "a@contoso.com", IP: "203.0.113.9", Raw: raw}
	c := &evalCtx{}
	c.reset(set, env)
	if _, err := set.matchCtx(context.Background(), c, NewMemCounter()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"raw", "raw.riskLevel", "forward_recipients"} {
		if r, err := parseRef(p, false); err == nil {
			_, _ = c.resolve(r, nil)
		}
	}
	if !c.scanned || len(c.members) == 0 {
		t.Fatal("the event's record was not read: the test proves little")
	}
	env2 := &event.Envelope{ID: "e2"}
	c.reset(set, env2)
	v := reflect.ValueOf(c).Elem()
	ty := v.Type()
	for i := 0; i < ty.NumField(); i++ {
		name, f := ty.Field(i).Name, v.Field(i)
		switch {
		case name == "env":
			if c.env != env2 {
				t.Error("env not the new event")
			}
		case name == "set":
			if c.set != set {
				t.Error("set not the new set")
			}
		case kept[name]:
			if f.Kind() == reflect.Slice && f.Len() != 0 {
				t.Errorf("%s: kept with %d entries, want none", name, f.Len())
			}
		case !f.IsZero():
			t.Errorf("%s: not cleared by reset", name)
		}
	}
}
