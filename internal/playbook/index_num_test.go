package playbook

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// TestNumericIndex: a rule that requires a field to equal integers is filed
// by number, and the index, the compiled program and matching a decoded
// event agree with the reference evaluation whatever the record holds: a
// JSON number, numeric text in any spelling, text that only looks numeric,
// non-ASCII text, lists, objects, null.
func TestNumericIndex(t *testing.T) {
	rule := `title: numbers
logsource: {product: azure, service: signinlogs}
detection:
  a: {ResultType: [50074, 500121, -7, 0]}
  b: {ResultType: abc, AppDisplayName|contains: x}
  condition: a or b
`
	r, err := ParseSigma("num.yml", []byte(rule))
	if err != nil {
		t.Fatal(err)
	}
	set := sigmaSet([]*SigmaRule{r}, 2)
	si := set.idx.bySrc[event.SourceSignIn]
	filed := false
	for _, k := range si.keyed {
		if len(k.num) == 4 && len(k.m) == 1 {
			filed = true
		}
	}
	if !filed || len(si.rest) != 0 {
		t.Fatalf("the rule is not filed by number: %d rest units", len(si.rest))
	}
	codes := []string{`50074`, `500121.0`, `5.0074e4`, `-7`, `-0`, `0`, `1`, `500740`, `"50074"`, `"50074.0"`, `" 50074"`,
		`"+50074"`, `"050074"`, `"-7"`, `"-7.0"`, `"abc"`, `"ABC"`, `"ａｂｃ"`, `"\u212abc"`, `true`, `null`, `[1, 50074]`,
		`["x", "500121"]`, `{"x": 500121}`, `[[0]]`, `""`, `"1e400"`, `"0x0"`, `"NaN"`}
	ctx := context.Background()
	matched, quiet := 0, 0
	for _, code := range codes {
		for _, app := range []string{"", `,"appDisplayName":"xyz"`} {
			raw := fmt.Sprintf(`{"status":{"errorCode":%s}%s}`, code, app)
			env := &event.Envelope{Source: event.SourceSignIn, Kind: "failure", ID: "n", Raw: []byte(raw)}
			want, wantErr := set.matchReference(ctx, env, nil)
			got, gotErr := set.Match(env)
			if !sameMatches(got, gotErr, want, wantErr) {
				t.Errorf("%s:\n got %s\nwant %s", raw, showMatches(got, gotErr), showMatches(want, wantErr))
			}
			var d Decoded
			set.Decode(env, &d)
			dec, decErr := set.MatchDecoded(ctx, &d, nil)
			if !sameMatches(dec, decErr, want, wantErr) {
				t.Errorf("%s: decoded\n got %s\nwant %s", raw, showMatches(dec, decErr), showMatches(want, wantErr))
			}
			if len(want) > 0 {
				matched++
			} else {
				quiet++
			}
		}
	}
	if matched < 10 || quiet < 10 {
		t.Errorf("%d records matched, %d did not: the cases do not cover both", matched, quiet)
	}
}

// TestNumKey: only integers of at most 15 digits file by number.
func TestNumKey(t *testing.T) {
	for s, want := range map[string]bool{"0": true, "-7": true, "50074": true, "123456789012345": true,
		"1234567890123456": false, "": false, "-": false, "1.0": false, "1e3": false, "+1": false, " 1": false, "0x1": false} {
		if _, ok := numKey(s); ok != want {
			t.Errorf("numKey(%q) = %t, want %t", s, ok, want)
		}
	}
}

// TestMaybeNumber: maybeNumber is true for everything strconv.ParseFloat
// accepts.
func TestMaybeNumber(t *testing.T) {
	for _, s := range []string{"0", "-1", "+1", ".5", "-.5", "1e3", "inf", "-Inf", "+INFINITY", "nan", "NaN", "0x1p-2", "1_0", "٣", "", "-", "+", " 1", "x", "e5", "∞", "1.", "00"} {
		_, err := strconv.ParseFloat(s, 64)
		if err == nil && !maybeNumber(s) {
			t.Errorf("maybeNumber(%q) false, but ParseFloat accepts it", s)
		}
	}
}
