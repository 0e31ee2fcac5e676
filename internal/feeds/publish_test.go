package feeds

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

// TestAppendEnvelopeIsJSONMarshal: the hand-written envelope is the bytes of
// json.Marshal when Raw is compact and has no HTML characters, and decodes to
// the same envelope always.
func TestAppendEnvelopeIsJSONMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
		"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xed\xa0\x80", "@", ".", ":"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800), time.FixedZone("y", -8*3600), time.FixedZone("z", 0)}
	raws := []string{`{"Id":"x","n":1.5e3,"a":[true,null]}`, `[]`, `"s"`, `{"m":"<a@b> & c"}`, ``}
	for i := range 5000 {
		env := event.Envelope{ID: str(), Source: event.Source(str()), Kind: str(), TenantID: str()}
		if i%2 == 0 {
			env.User, env.UserID, env.IP = str(), str(), str()
		}
		env.Time = time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
		if i%7 == 0 {
			env.Time = env.Time.Truncate(time.Second)
		}
		if r := raws[i%len(raws)]; r != "" {
			env.Raw = json.RawMessage(r) // nil Raw is null for both
		}
		want, werr := json.Marshal(env)
		got, gerr := appendEnvelope([]byte("junk"), &env)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%+v: error %v, json.Marshal %v", env, gerr, werr)
		}
		if werr != nil {
			continue
		}
		got = got[len("junk"):]
		htmlInRaw := bytes.ContainsAny(env.Raw, "<>&")
		if !htmlInRaw && !bytes.Equal(got, want) {
			t.Fatalf("appendEnvelope\n%q\njson.Marshal\n%q", got, want)
		}
		var a, b event.Envelope
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		var ra, rb any
		_ = json.Unmarshal(a.Raw, &ra)
		_ = json.Unmarshal(b.Raw, &rb)
		a.Raw, b.Raw = nil, nil
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ra, rb) || !a.Time.Equal(env.Time) {
			t.Fatalf("decoded differently:\n%+v %v\n%+v %v", a, ra, b, rb)
		}
	}
	// Years json.Marshal refuses.
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		env := event.Envelope{ID: "x", Time: tm}
		if _, err := appendEnvelope(nil, &env); err == nil {
			t.Errorf("%v accepted", tm)
		}
	}
}
