package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The single-pass normaliser must agree with the reference (normalize_ref_test.go)
// on every input: the same envelope, or an error of the same class. Messages are
// compared too, since both build them from the same formats.

// errClass names the sentinel an error wraps, so that two errors can be compared.
func errClass(err error) string {
	var syntax *json.SyntaxError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnknownSource):
		return "ErrUnknownSource"
	case errors.Is(err, ErrMissingField):
		return "ErrMissingField"
	case errors.Is(err, ErrBadField):
		return "ErrBadField"
	case errors.As(err, &syntax):
		return "SyntaxError"
	}
	return "other"
}

// diffReference runs every entry point of both implementations on raw and
// reports the first difference ("" when they agree).
func diffReference(raw []byte) string {
	orig := bytes.Clone(raw)
	type call struct {
		name      string
		got, want func() (Envelope, error)
	}
	calls := []call{{
		"Normalize",
		func() (Envelope, error) { return Normalize(argTenant, raw) },
		func() (Envelope, error) { return normalizeReference(argTenant, raw) },
	}}
	for _, src := range []Source{SourceAudit, SourceSignIn, SourceRiskDetection, SourceRiskyUser, "bogus"} {
		calls = append(calls, call{
			"NormalizeAs(" + string(src) + ")",
			func() (Envelope, error) { return NormalizeAs(src, argTenant, raw) },
			func() (Envelope, error) { return normalizeAsReference(src, argTenant, raw) },
		})
	}
	for _, c := range calls {
		got, gotErr := c.got()
		want, wantErr := c.want()
		if g, w := errClass(gotErr), errClass(wantErr); g != w {
			return fmt.Sprintf("%s: error %s (%v), reference %s (%v)", c.name, g, gotErr, w, wantErr)
		}
		if gotErr != nil {
			if !sameMessage(gotErr, wantErr) {
				return fmt.Sprintf("%s: error %q, reference %q", c.name, gotErr, wantErr)
			}
			continue
		}
		if fieldsOf(got) != fieldsOf(want) {
			return fmt.Sprintf("%s:\n got %+v\nwant %+v", c.name, fieldsOf(got), fieldsOf(want))
		}
		if !bytes.Equal(got.Raw, raw) || len(got.Raw) > 0 && &got.Raw[0] == &raw[0] {
			return c.name + ": Raw is not a copy of the input"
		}
	}
	gotSrc, gotErr := DetectSource(raw)
	wantSrc, wantErr := detectSourceReference(raw)
	if gotSrc != wantSrc || errClass(gotErr) != errClass(wantErr) ||
		gotErr != nil && !sameMessage(gotErr, wantErr) {
		return fmt.Sprintf("DetectSource = %q, %v; reference %q, %v", gotSrc, gotErr, wantSrc, wantErr)
	}
	if !bytes.Equal(raw, orig) {
		return "the input was modified"
	}
	return ""
}

// sameMessage compares error texts; encoding/json's text for a valid JSON value
// that is not an object names the Go type decoded into, which differs.
func sameMessage(got, want error) bool {
	const typeErr = "event: decode record: json: cannot unmarshal "
	if g, w := got.Error(), want.Error(); strings.HasPrefix(w, typeErr) {
		cut := func(s string) string { s, _, _ = strings.Cut(s, " into Go value"); return s }
		return cut(g) == cut(w)
	}
	return got.Error() == want.Error()
}

// tableRecords are the records of the table tests.
var tableRecords = []string{auditInboxRule, auditMailbox, auditSystem, auditAAD, auditQueryRecord,
	signInOK, signInFail, signInNoStatus, riskDet, riskDetNoLast, riskyUser, diagSignIn, diagRiskyUser,
	diagRiskNoTime, diagAuditLogs, directoryAudit, caPolicy}

// edgeRecords are hand-made inputs at the corners of JSON and of the rules.
var edgeRecords = []string{
	// not one object
	``, ` `, `null`, ` null `, `true`, `1`, `"x"`, `[]`, `[{}]`, `{}`, `{} `, "\t{}\r\n", `{}{}`, `{},`, `{`, `}`,
	"\xef\xbb\xbf{}", "\xef\xbb\xbf" + auditInboxRule, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`,
	`{'a':1}`, `{a:1}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":-0.0e-0}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":{"b"}}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}", `{"a":"\`,
	`{"a":"x`, `{"a":1`, `{"a"`, `{"a":[`, `{"a":{`, `{"a":"\"}`, "{\"a\":\"\xff\xfe\"}",
	`{"a":NaN}`, `{"a":Infinity}`, `{"a":+1}`, `{"a":0x10}`,
	strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000),
	`{"a":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}`,
	`{"a":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 9999) + `1` + strings.Repeat(`}`, 9999) + `}`,
	`{"a":` + strings.Repeat(`{"b":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}`,
	`{"category":"SignInLogs","properties":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}`,
	`{"category":"SignInLogs","properties":{"status":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}}`,
	`{"category":"SignInLogs","properties":{"status":{"x":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}}}`,
	`{"category":"SignInLogs","properties":{"status":{"x":` + strings.Repeat(`[`, 9997) + strings.Repeat(`]`, 9997) + `}}}`,

	// escapes in keys and values
	`{"Creation\u0054ime":"2024-03-01T10:20:30","\u0049d":"x","Operation":"O\u0070","UserId":"a\u0040contoso.com"}`,
	`{"CreationTime":"2024\u002d03-01T10:20:30","Id":" \u0078 ","Operation":"X","ClientIP":"1.2.3.4\u003a80"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"x","Operation":"X","UserId":"a\\b@contoso.com","MailboxOwnerUPN":"o\u0027brien@contoso.com"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"x","Operation":"X","UserId":"\ud83d\ude00@contoso.com"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"x","Operation":"X","UserId":"\ud800@contoso.com","ClientIP":"\u0031.2.3.4"}`,
	"{\"CreationTime\":\"2024-03-01T10:20:30\",\"Id\":\"x\xff\",\"Operation\":\"X\xc3\",\"UserId\":\"a\xff@contoso.com\"}",
	"{\"CreationTime\":\"2024-03-01T10:20:30\",\"Id\":\"\xc3\xa9\",\"Operation\":\"\xe2\x80\xa8\",\"UserId\":\"\xc3\xa9@contoso.com\"}",
	"{\"CreationTime\xff\":\"2024-03-01T10:20:30\",\"Id\":\"x\",\"Operation\":\"X\"}",
	`{"CreationTime":"2024-03-01T10:20:30","Id":"x","Operation":"X","UserKey":"11111111-2222-3333-4444-55555555555\u0035"}`,
	`{"category":"Sign\u0049nLogs","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z"}}`,
	`{"category":"RisKyUsers","properties":{"id":"a","riskLastUpdatedDateTime":"2024-03-01T10:20:30Z"}}`,
	"{\"category\":\"Ri\xc5\xbfkyUsers\",\"properties\":{}}",
	"{\"category\":\"SİgnInLogs\",\"properties\":{}}",
	`{"category":"SIGNINLOGS","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z","status":{"error\u0043ode":0}}}`,

	// nulls, numbers and other types where strings are expected
	`{"CreationTime":"2024-03-01T10:20:30","Id":null,"Operation":null}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":[],"Operation":{}}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":true,"Operation":false,"UserId":1,"ClientIP":1234}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":-1.5e3,"Operation":0,"RecordType":null}`,
	`{"CreationTime":20240301,"Id":"x","Workload":"X"}`,
	`{"CreationTime":true,"Id":"x","Workload":"X"}`,
	`{"CreationTime":{},"Id":"x","Workload":"X"}`,
	`{"CreationTime":"","Id":"x","Workload":"X"}`,
	`{"CreationTime":"  ","Id":"x","Workload":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"   ","Workload":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"\u00a0","Workload":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"\u0085x\u2028","Workload":"X","Operation":"\u3000"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":null}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":true}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":" 0 "}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"-0"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"0x0"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"0x0p0"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"NaN"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"inf"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"+0"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"1_0"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0.0}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0e10}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":1e400}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":1e-400}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":000000000000000}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"0000000000000000000000"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"1` + strings.Repeat("0", 400) + `"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":"-"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":[0]}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":[{"errorCode":0}]}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":"0"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"status":{"errorCode":0},"id":"inner"}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0,"errorCode":1}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0},"status":{"x":1}}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0},"status":null}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":1},"status":{"errorCode":0}}`,

	// duplicate keys: the last one wins
	`{"CreationTime":"2024-03-01T10:20:30","Id":"first","Id":"second","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"first","Id":null,"Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"first","\u0049d":"escaped","Operation":"X"}`,
	`{"CreationTime":"bad","CreationTime":"2024-03-01T10:20:30","Id":"x","Operation":"X"}`,
	`{"category":"SignInLogs","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z"},"properties":null}`,
	`{"category":"SignInLogs","properties":null,"properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z"}}`,
	`{"category":"SignInLogs","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z"},"properties":{"id":"b","createdDateTime":"2024-03-02T10:20:30Z"}}`,
	`{"category":"","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z","appId":"x"}}`,
	`{"category":" ","properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z","appId":"x"}}`,
	`{"category":5,"properties":{}}`,
	`{"category":null,"properties":{"id":"a","createdDateTime":"2024-03-01T10:20:30Z","appId":"x"}}`,
	`{"category":"SignInLogs","properties":[]}`,
	`{"category":"SignInLogs","properties":"x","id":"a","createdDateTime":"2024-03-01T10:20:30Z","appId":"x"}`,
	`{"auditData":{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X"},"auditData":{"x":1},"id":"q"}`,
	`{"auditData":{"x":1},"auditData":{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X"}}`,
	`{"auditData":{"CreationTime":"2024-03-01T10:20:30","Id":"a"},"id":"q","createdDateTime":"2024-03-01T10:20:30Z","appId":"x"}`,
	`{"auditData":"{}","CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X"}`,

	// wrappers, nested and mixed
	`{"category":"SignInLogs","time":"2024-03-01T10:20:30Z","properties":{"category":"RiskyUsers","properties":{"id":"x"}}}`,
	`{"category":"RiskyUsers","time":"2024-03-01T10:20:30Z","tenantId":"99999999-8888-7777-6666-555555555555","properties":{"id":"44444444-5555-6666-7777-888888888888","userId":"x"}}`,
	`{"category":"UserRiskEvents","time":"bad","properties":{"id":"r"}}`,
	`{"category":"UserRiskEvents","time":"0001-01-01T00:00:00Z","properties":{"id":"r"}}`,
	`{"category":"UserRiskEvents","time":null,"properties":{"id":"r","detectedDateTime":"0001-01-01T00:00:00Z"}}`,
	`{"category":"UserRiskEvents","properties":{"id":"r","lastUpdatedDateTime":"0001-01-01T00:00:00","detectedDateTime":"2024-03-01T10:20:30.5+02:00"}}`,
	`{"category":"SignInLogs","organizationId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","userPrincipalName":"w@contoso.com","userId":"11111111-2222-3333-4444-555555555555","properties":{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X"}}`,
	`{"id":"q","userPrincipalName":"w@contoso.com","userId":"11111111-2222-3333-4444-555555555555","organizationId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","tenantId":"bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee","auditData":{"CreationTime":"2024-03-01T10:20:30","Id":"a","RecordType":1,"UserId":"x","ipAddress":"1.2.3.4"}}`,
	`{"id":"q","auditData":{"auditData":{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X"}}}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X","userPrincipalName":"top@contoso.com","organizationId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}`,
	`{"value":[` + signInOK + `]}`, `{"value" : [ ]}`, `{"value":"[x]"}`, `{"value":{}}`,

	// whitespace everywhere
	" \n{ \"CreationTime\" :\t\"2024-03-01T10:20:30\" , \"Id\" : \"a\" ,\r\n\"Operation\" : \"X\" } \n",
	"{\"CreationTime\":\" 2024-03-01T10:20:30 \",\"Id\":\"a\",\"Operation\":\" X \",\"UserId\":\" a@contoso.com \",\"ClientIP\":\" 1.2.3.4:80 \"}",

	// times
	`{"CreationTime":"2024-02-29T10:20:30","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2023-02-29T10:20:30","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-04-31T10:20:30","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T24:00:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T23:59:60Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30.","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30.1234567891Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30,123Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01t10:20:30Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30+24:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30+23:59","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30-00:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30+0100","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01T10:20:30+01","Id":"a","Operation":"X"}`,
	`{"CreationTime":"0000-12-31T23:00:00-02:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"0001-01-01T00:30:00+01:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"9999-12-31T23:00:00-02:00","Id":"a","Operation":"X"}`,
	`{"CreationTime":"9999-12-31T23:59:59.999999999Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"0001-01-01T00:00:00.000Z","Id":"a","Operation":"X"}`,
	`{"CreationTime":"1/2/2024 3:04:05 PM","Id":"a","Operation":"X"}`,
	`{"CreationTime":"2024-03-01 10:20:30","Id":"a","Operation":"X"}`,
	`{"CreationTime":"+2024-03-01T10:20:30","Id":"a","Operation":"X"}`,
	`{"CreationTime":"２０２４-03-01T10:20:30","Id":"a","Operation":"X"}`,
	`{"id":"r","riskEventType":"x","lastUpdatedDateTime":"2024-03-01T10:20:30.100Z","userId":"44444444-5555-6666-7777-888888888888"}`,
	`{"id":"44444444-5555-6666-7777-88888888888G","riskLevel":"low","userPrincipalName":"a@b.co","riskLastUpdatedDateTime":"2024-03-01T10:20:30Z"}`,
	`{"id":" 44444444-5555-6666-7777-888888888888 ","riskLevel":"low","riskLastUpdatedDateTime":"2024-03-01T10:20:30Z"}`,

	// addresses
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"0.0.0.0"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"0.0.0.0:80"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"01.2.3.4"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"1.2.3.4:123456"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"1.2.3.4:"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"256.2.3.4"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"1234.2.3.4"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"1.2.3.4.5"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"::"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"[::]:80"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"fe80::1%eth0"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"::ffff:1.2.3.4"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"[2001:DB8::1]:443"}`,
	`{"id":"s","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","ipAddress":"<null>"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X","ClientIP":"","ClientIPAddress":"host:80","ActorIpAddress":"[1.2.3.4]"}`,
	`{"CreationTime":"2024-03-01T10:20:30","Id":"a","Operation":"X","ClientIP":"1.2.3.4","ClientIPAddress":"5.6.7.8"}`,
}

func TestNormalizeMatchesReference(t *testing.T) {
	var n int
	check := func(where string, raw []byte) {
		t.Helper()
		n++
		if d := diffReference(raw); d != "" {
			t.Errorf("%s: %s\ninput %q", where, d, truncate(raw))
		}
	}
	for i, s := range tableRecords {
		check(fmt.Sprintf("table[%d]", i), []byte(s))
	}
	for i, s := range edgeRecords {
		check(fmt.Sprintf("edge[%d]", i), []byte(s))
		// every prefix of the short ones: truncated input
		if len(s) < 400 {
			for j := range len(s) {
				check(fmt.Sprintf("edge[%d][:%d]", i, j), []byte(s[:j]))
			}
		}
	}
	for _, dir := range []string{"testdata/fuzz/FuzzNormalize", "testdata/fuzz/FuzzNormalizeDifferential"} {
		for name, data := range fuzzCorpus(t, dir) {
			check(name, data)
		}
	}
	if recs := fixtureRecords(t); recs != nil {
		for i, raw := range recs {
			check(fmt.Sprintf("fixture record %d", i), raw)
		}
	}
	t.Logf("%d inputs agree with the reference", n)
}

func truncate(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// fuzzCorpus reads the []byte values of a checked-in fuzz corpus folder.
func fuzzCorpus(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(data), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", path)
		}
		lit := strings.TrimSpace(lines[1])
		if !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
			t.Fatalf("%s: not one []byte value", path)
		}
		s, err := strconv.Unquote(lit[len("[]byte(") : len(lit)-1])
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[path] = []byte(s)
	}
	return out
}

// fixtureRecords returns every JSON value found in the public fixtures, whatever
// the folder: each file, each line, each element of an array or of a list's
// value, and each SEKOIA input.message; nil when the fixtures are absent.
func fixtureRecords(tb testing.TB) [][]byte {
	tb.Helper()
	if _, err := os.Stat(publicFixtures); err != nil {
		tb.Logf("public fixtures not found at %s (%v): fixture records not compared", publicFixtures, err)
		return nil
	}
	var out [][]byte
	var add func(raw []byte)
	add = func(raw []byte) {
		out = append(out, raw)
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) == nil {
			for _, v := range arr {
				add(v)
			}
			return
		}
		var obj struct {
			Value json.RawMessage `json:"value"`
			Input struct {
				Message *string `json:"message"`
			} `json:"input"`
		}
		if json.Unmarshal(raw, &obj) != nil {
			return
		}
		if v := bytes.TrimSpace(obj.Value); len(v) > 0 && v[0] == '[' {
			add(v)
		}
		if obj.Input.Message != nil {
			add([]byte(*obj.Input.Message))
		}
	}
	err := filepath.WalkDir(publicFixtures, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) == ".md" || filepath.Base(filepath.Dir(path)) == "sigma" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		add(data)
		if lines := ndjson(data); len(lines) > 1 {
			for _, l := range lines {
				add(l)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", publicFixtures, err)
	}
	return out
}

// FuzzNormalizeDifferential compares the normaliser with the reference on
// arbitrary input. Its seed corpus is testdata/fuzz/FuzzNormalizeDifferential
// plus the table and edge records.
func FuzzNormalizeDifferential(f *testing.F) {
	for _, s := range tableRecords {
		f.Add([]byte(s))
	}
	for _, s := range edgeRecords {
		if len(s) < 2000 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := diffReference(data); d != "" {
			t.Fatalf("%s\ninput %q", d, truncate(data))
		}
	})
}

// benchAudit is a realistic ~1 KB Exchange MailItemsAccessed record, the bulk of
// a Management Activity Audit.Exchange blob.
const benchAudit = `{"CreationTime":"2024-05-14T09:41:27","Id":"5e1c8a2d-9f3b-4c6e-a1d7-3b2f0e9c4a81","Operation":"MailItemsAccessed",` +
	`"OrganizationId":"b7f3c2a1-4d5e-4f60-8a9b-0c1d2e3f4a5b","RecordType":50,"ResultStatus":"Succeeded",` +
	`"UserKey":"10032002F222981B","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"185.73.124.135:19823",` +
	`"UserId":"alice@contoso.com","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"",` +
	`"ClientIPAddress":"185.73.124.135","ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",` +
	`"ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1180699209-877415012-3182924384-1004",` +
	`"MailboxGuid":"03d9e949-cbc1-4dd2-b7ba-8a1d1e0207b5","MailboxOwnerSid":"S-1-5-21-1180699209-877415012-3182924384-1004",` +
	`"MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],` +
	`"OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR07MB5763 (15.20.4200.000)\r\n",` +
	`"SessionId":"dcdad6b2-f279-48c6-9ed8-3df0ffde4ece","Folders":[{"FolderItems":[` +
	`{"InternetMessageId":"<AM0PR07MB576312B164491AF0F9214C738DF6A@AM0PR07MB5763.eurprd07.prod.outlook.com>","SizeInBytes":51234},` +
	`{"InternetMessageId":"<AM0PR07MB5763A95F7E4A5BA512692F698DF6A@AM0PR07MB5763.eurprd07.prod.outlook.com>","SizeInBytes":4871}],` +
	`"Id":"LgAAAABxSjbeIoBUT6MlFIM9cqcFAQCxmw0Q8U/kQIyFE2Uk+mwoAAAAAAEPAAAB","Path":"\\Inbox"}],"OperationCount":2}`

type normalizeFunc func(tenantID string, raw json.RawMessage) (Envelope, error)

var benchImpls = []struct {
	name string
	fn   normalizeFunc
}{{"scanner", Normalize}, {"reference", normalizeReference}}

// BenchmarkNormalizeAudit measures one ~1 KB Exchange audit record, with the
// single-pass normaliser and with the reference, in records/s and allocs/op.
func BenchmarkNormalizeAudit(b *testing.B) {
	raw := []byte(benchAudit)
	if d := diffReference(raw); d != "" {
		b.Fatal(d)
	}
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := impl.fn(argTenant, raw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkNormalizeFixtures normalises every public fixture record that is an
// event (one op = all of them); skipped without the shared fixtures.
func BenchmarkNormalizeFixtures(b *testing.B) {
	var recs [][]byte
	var size int64
	for _, raw := range fixtureRecords(b) {
		if _, err := normalizeReference(argTenant, raw); err == nil {
			recs = append(recs, raw)
			size += int64(len(raw))
		}
	}
	if len(recs) == 0 {
		b.Fatal("no public fixture records (../shared/fixtures/public beside the checkout)")
	}
	for _, impl := range benchImpls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				for _, raw := range recs {
					if _, err := impl.fn(argTenant, raw); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(len(recs)), "records/op")
		})
	}
}

// TestNormalizeMatchesReferenceGenerated compares the two on records assembled at
// random (fixed seed) from the member names the normalisers read and from values
// at the corners of each rule, bare and wrapped, with duplicates.
func TestNormalizeMatchesReferenceGenerated(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := append(slotNames[:], "errorCode", "Parameters", "x", `\u0049d`, `Creation\u0054ime`, `user\u0050rincipalName`)
	values := []string{
		`null`, `true`, `false`, `0`, `-0`, `1`, `50126`, `1.5e3`, `{}`, `[]`, `[1,{"a":[]}]`, `""`, `" "`, `"\u00a0"`,
		`"x"`, `"Op"`, `" New-InboxRule "`, `"ANONYMIZED"`, `"SignInLogs"`, `"riskyusers"`, `"UserRiskEvents"`, `"AuditLogs"`,
		`"2024-03-01T10:20:30"`, `"2024-03-01T10:20:30Z"`, `"2024-03-01T10:20:30.1234567Z"`, `"2024-03-01T10:20:30+05:30"`,
		`"2024-03-01T9:20:30Z"`, `"2024-03-01 10:20:30"`, `"8/22/2022 6:11:52 PM"`, `"0001-01-01T00:00:00Z"`, `"0001-01-01T00:00:00"`,
		`"2024-02-30T10:20:30Z"`, `"9999-12-31T23:59:59-01:00"`, `"yesterday"`, `"2024\u002d03-01T10:20:30Z"`,
		`"1.2.3.4"`, `"1.2.3.4:5"`, `"[1.2.3.4]:80"`, `"::ffff:10.0.0.1"`, `"2001:DB8::1"`, `"[2001:db8::1]:443"`, `"0.0.0.0"`,
		`"<null>"`, `"host:80"`, `"1.2.3.04"`, `" 5.6.7.8 "`, `"fe80::1%25eth0"`,
		`"alice@contoso.com"`, `" Bob@Contoso.COM "`, `"a\u0040b.co"`, `"urn:spo:guest#a@b.com"`, `"NT AUTHORITY\\SYSTEM (x)"`,
		`"b_f.com#EXT#@t.onmicrosoft.com"`, "\"\xff@contoso.com\"", `"é@contoso.com"`,
		`"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"`, `"AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"`, `"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeg"`,
		`{"errorCode":0}`, `{"errorCode":"0"}`, `{"errorCode":53003}`, `{"errorCode":null}`, `{"errorCode":0,"errorCode":1}`,
	}
	pools := map[string][]string{}
	for _, v := range values {
		switch {
		case strings.Contains(v, "-0") && strings.Contains(v, ":") || strings.Contains(v, "/20") || v == `"yesterday"`:
			pools["time"] = append(pools["time"], v)
		case strings.Count(v, ".") == 3 || strings.Contains(v, "::") || strings.Contains(v, "null>") || strings.Contains(v, "host"):
			pools["ip"] = append(pools["ip"], v)
		case strings.Contains(v, "@") || strings.Contains(v, `\u0040`):
			pools["upn"] = append(pools["upn"], v)
		case strings.Count(v, "-") == 4:
			pools["guid"] = append(pools["guid"], v)
		case strings.Contains(v, "errorCode"):
			pools["status"] = append(pools["status"], v)
		}
	}
	pool := map[string]string{
		"CreationTime": "time", "createdDateTime": "time", "lastUpdatedDateTime": "time", "detectedDateTime": "time",
		"activityDateTime": "time", "riskLastUpdatedDateTime": "time", "time": "time",
		"ClientIP": "ip", "ClientIPAddress": "ip", "ActorIpAddress": "ip", "ipAddress": "ip",
		"UserId": "upn", "MailboxOwnerUPN": "upn", "userPrincipalName": "upn",
		"UserKey": "guid", "userId": "guid", "OrganizationId": "guid", "organizationId": "guid", "tenantId": "guid",
		"status": "status",
	}
	value := func(name string) string {
		if p := pools[pool[name]]; len(p) > 0 && rng.IntN(4) > 0 {
			return p[rng.IntN(len(p))]
		}
		return values[rng.IntN(len(values))]
	}
	shapes := [][]string{
		{"CreationTime", "Id", "Operation", "RecordType", "Workload", "UserId", "UserKey", "ClientIP", "OrganizationId"},
		{"id", "createdDateTime", "status", "userPrincipalName", "userId", "ipAddress", "appId"},
		{"id", "riskEventType", "lastUpdatedDateTime", "detectedDateTime", "userPrincipalName", "ipAddress", "userId"},
		{"id", "riskLevel", "riskLastUpdatedDateTime", "userPrincipalName", "userId"},
	}
	var record func(depth int) string
	record = func(depth int) string {
		var members []string
		for _, name := range shapes[rng.IntN(len(shapes))] {
			if rng.IntN(8) > 0 {
				members = append(members, name)
			}
		}
		for range rng.IntN(5) {
			members = append(members, names[rng.IntN(len(names))])
		}
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		var b strings.Builder
		b.WriteByte('{')
		for i, name := range members {
			if i > 0 {
				b.WriteByte(',')
			}
			ws := []string{"", "", "", " ", "\n\t"}[rng.IntN(5)]
			b.WriteString(`"` + name + `"` + ws + ":" + ws)
			if depth < 2 && (name == "properties" || name == "auditData") && rng.IntN(4) > 0 {
				b.WriteString(record(depth + 1))
			} else {
				b.WriteString(value(name))
			}
		}
		b.WriteByte('}')
		return b.String()
	}
	wrap := func(rec string) string {
		switch rng.IntN(4) {
		case 0:
			cats := []string{`"SignInLogs"`, `"riskyusers"`, `"UserRiskEvents"`, `"AuditLogs"`, `""`, `null`}
			return `{"time":` + value("time") + `,"category":` + cats[rng.IntN(len(cats))] + `,"tenantId":` + value("tenantId") +
				`,"properties":` + rec + `}`
		case 1:
			return `{"id":"q","userPrincipalName":` + value("userPrincipalName") + `,"userId":` + value("userId") +
				`,"organizationId":` + value("organizationId") + `,"auditData":` + rec + `}`
		}
		return rec
	}
	outcomes := map[string]int{}
	for i := range 4000 {
		raw := []byte(wrap(record(0)))
		if d := diffReference(raw); d != "" {
			t.Fatalf("record %d: %s\ninput %s", i, d, raw)
		}
		env, err := normalizeReference(argTenant, raw)
		outcomes[string(env.Source)+" "+errClass(err)]++
	}
	t.Logf("reference outcomes: %v", outcomes)
}
