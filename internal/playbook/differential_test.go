package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// TestDifferentialEdgeCases: the fast comparisons agree with the reference
// on values where case folding, numbers and lists are delicate.
func TestDifferentialEdgeCases(t *testing.T) {
	rule := `title: edge
logsource: {product: m365, service: audit}
detection:
  a: {Operation: ["ſuccess", "KELVIN", "50074", "set-inboxrule"]}
  b: {Operation|contains: ["ⱥb", "forward"], Workload|startswith: "exch", ClientIP|endswith: ".5"}
  c: {Parameters|contains: "ForwardTo", ResultStatus|re: "^(?i)succ"}
  d: {Operation|contains: "*x?y*", UserType: 2}
  e: {ObjectId|cidr: "10.0.0.0/8"}
  f: {RecordType|gte: 3, Count|lt: 10}
  g: {Workload: null}
  h: {Workload|exists: true, Operation|all: ["set", "rule"]}
  i: {Operation|cased: Set-InboxRule}
  condition: 1 of them
`
	r, err := ParseSigma("edge.yml", []byte(rule))
	if err != nil {
		t.Fatal(err)
	}
	set := sigmaSet([]*SigmaRule{r}, 2)
	ops := []string{"success", "ſuccess", "SUCCESS", "kelvin", "\u212aELVIN", "50074", "50074.0", " 50074", "Set-InboxRule",
		"set-inboxrule", "SET-INBOXRULE", "ȺB", "ⱥb", "Ⱥ", "AutoForward", "axzyb", "", "x", "Set-Rule"}
	wls := []string{"", "Exchange", "EXCH", "ex", "null"}
	extra := []string{
		`"Parameters":[{"Name":"ForwardTo","Value":"a@b.c"}],"ResultStatus":"Succeeded"`,
		`"Parameters":{"x":[1,2,{"y":"FORWARDTO"}]},"ResultStatus":"failed"`,
		`"UserType":2,"ObjectId":"10.1.2.3","ClientIP":"1.2.3.5"`,
		`"UserType":"2.0","ObjectId":"[::ffff:10.1.2.3]:443","RecordType":"3","Count":"9"`,
		`"RecordType":2,"Count":11`,
		`"operation":"set-inboxrule"`,
	}
	ctx := context.Background()
	n := 0
	for _, op := range ops {
		for _, wl := range wls {
			for _, ex := range append(extra, "") {
				raw := fmt.Sprintf(`{"Operation":%q`, op)
				if wl == "null" {
					raw += `,"Workload":null`
				} else if wl != "" {
					raw += fmt.Sprintf(`,"Workload":%q`, wl)
				}
				if ex != "" {
					raw += "," + ex
				}
				raw += "}"
				env := &event.Envelope{Source: event.SourceAudit, Kind: op, ID: "x", Raw: []byte(raw)}
				want, wantErr := set.matchReference(ctx, env, nil)
				got, gotErr := set.Match(env)
				if !sameMatches(got, gotErr, want, wantErr) {
					t.Errorf("%s:\n got %s\nwant %s", raw, showMatches(got, gotErr), showMatches(want, wantErr))
				}
				n++
			}
		}
	}
	t.Logf("%d records", n)
}

func sameMatches(got []Match, gotErr error, want []Match, wantErr error) bool {
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		return false
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !reflect.DeepEqual(normMatch(got[i]), normMatch(want[i])) {
			return false
		}
	}
	return true
}

// normMatch: nil and empty slices are the same result.
func normMatch(m Match) Match {
	if len(m.Steps) == 0 {
		m.Steps = nil
	}
	if len(m.Approval) == 0 {
		m.Approval = nil
	}
	return m
}

func showMatches(ms []Match, err error) string {
	s := fmt.Sprintf("err=%v", err)
	for _, m := range ms {
		s += fmt.Sprintf("\n  %s: %s steps=%+v key=%q", m.Playbook, m.Reason, m.Steps, m.SuppressionKey)
	}
	return s
}

// TestFastPrimitives: the fast lower-casing, string scanning and member
// lookup agree with the plain ones on random input.
func TestFastPrimitives(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	alpha := []byte("aAzZ@[`{09 _-.\"\\KkſS")
	randStr := func(n int) string {
		b := make([]byte, 0, n)
		for len(b) < n {
			b = append(b, alpha[r.Intn(len(alpha))])
		}
		return string(b)
	}
	for i := 0; i < 20000; i++ {
		s := randStr(r.Intn(40))
		if isASCII(s) {
			dst := make([]byte, len(s))
			lowerASCII(dst, s)
			if string(dst) != strings.ToLower(s) {
				t.Fatalf("lowerASCII(%q) = %q", s, dst)
			}
		}
		// scanString against a byte-by-byte scan
		data := []byte(`"` + s)
		end, esc, err := scanString(data, 0)
		wantEnd, wantEsc, wantOK := 0, false, false
		for j := 1; j < len(data); j++ {
			if data[j] == '\\' {
				wantEsc = true
				j++
				continue
			}
			if data[j] == '"' {
				wantEnd, wantOK = j+1, true
				break
			}
		}
		if !wantOK {
			wantEsc = false
		}
		if (err == nil) != wantOK || end != wantEnd || esc != wantEsc {
			t.Fatalf("scanString(%q) = %d %v %v, want %d %v %v", data, end, esc, err, wantEnd, wantEsc, wantOK)
		}
	}
	// findMember is memberIndex.
	rule := "title: t\nlogsource: {product: m365, service: audit}\ndetection:\n  a: {Operation: x, Kk: y, SS: z, Name: n}\n  condition: a\n"
	sr, err := ParseSigma("t.yml", []byte(rule))
	if err != nil {
		t.Fatal(err)
	}
	set := sigmaSet([]*SigmaRule{sr}, 1)
	// and a path to the member named "" (raw[""])
	r0, err := parseRef(`raw[""]`, false)
	if err != nil {
		t.Fatal(err)
	}
	set.prog = setProg{}
	pb := newProgBuilder(&set.prog)
	for _, n := range []string{"", "Operation", "Kk", "SS", "Name"} {
		pb.refID(ref{text: "raw." + n, root: rootRaw, path: []string{n}})
	}
	pb.refID(r0)
	keys := []string{"", "Operation", "operation", "OPERATION", "OperatioN", "Kk", "kK", "KK", "\u212ak", "SS", "ſS", "ss", "Name", "name", "Nam", "x"}
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		b.WriteByte('{')
		n := r.Intn(8)
		for j := 0; j < n; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d", keys[r.Intn(len(keys))], j)
		}
		b.WriteByte('}')
		env := &event.Envelope{Source: event.SourceAudit, Raw: []byte(b.String())}
		c := newEvalCtx(set, env)
		c.beginMatch()
		for mid, name := range set.prog.members {
			if got, want := c.findMember(int32(mid)), c.memberIndex(name); got != want {
				t.Fatalf("%s: findMember(%q) = %d, memberIndex = %d", b.String(), name, got, want)
			}
		}
	}
}

// decodeRef is encoding/json's decoding into an any.
func decodeRef(b []byte) (any, bool) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false
	}
	return v, true
}

// TestDecodeValue: the hand-written decoder gives what encoding/json gives,
// on every member of every public record and on edge cases.
func TestDecodeValue(t *testing.T) {
	cases := []string{`{}`, `[]`, `{"a":1,"a":2}`, `[1,-0,0.5,1e3,-2E-2,1e400]`, `{"a":"\u00e9\n","b":"\xff"}`, "{\"a\":\"caf\xc3\xa9\"}",
		`[01]`, `[1.]`, `[.5]`, `[-]`, `[1e]`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[tru]`, `[nul]`, `{"a":"x` + "\x01" + `"}`, `[[[[]]]]`,
		`{"k":[true,false,null,{"x":[]}]}`, ` [ 1 , 2 ] `, `[1] x`, `{"\u0041":1}`, `["\ud800"]`, strings.Repeat("[", 300) + strings.Repeat("]", 300)}
	var n int
	check := func(b []byte) {
		got, gotOK := decodeValue(b)
		want, wantOK := decodeRef(b)
		if gotOK != wantOK || !reflect.DeepEqual(got, want) {
			t.Errorf("%.200q: got %v %v, want %v %v", b, got, gotOK, want, wantOK)
		}
		n++
	}
	for _, c := range cases {
		check([]byte(c))
	}
	recs := publicRecordsForTest(t)
	for _, r := range recs {
		ms, err := scanObject(bytes.TrimSpace(r), nil)
		if err != nil {
			continue
		}
		for _, m := range ms {
			check(m.val)
		}
	}
	t.Logf("%d values", n)
}

// FuzzDecodeValue: the hand-written decoder gives what encoding/json gives.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}],"c":"\u00e9"}`, `[1e400]`, `{"a":1,"a":true}`, "[\"\xff\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || (b[0] != '{' && b[0] != '[' && b[0] != '"') {
			return
		}
		got, gotOK := decodeValue(b)
		want, wantOK := decodeRef(b)
		if gotOK != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %v %v, want %v %v", b, got, gotOK, want, wantOK)
		}
	})
}

// publicRecordsForTest reads the records of the public fixtures' JSON
// files (a record, a list, or a Graph list response).
func publicRecordsForTest(t testing.TB) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	err := filepath.WalkDir(fixtures(t), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var list struct {
			Value []json.RawMessage `json:"value"`
		}
		var arr []json.RawMessage
		switch {
		case json.Unmarshal(data, &arr) == nil:
			out = append(out, arr...)
		case json.Unmarshal(data, &list) == nil && list.Value != nil:
			out = append(out, list.Value...)
		case json.Valid(data):
			out = append(out, data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("only %d records", len(out))
	}
	return out
}
