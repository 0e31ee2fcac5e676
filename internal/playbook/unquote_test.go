package playbook

import (
	"encoding/json"
	"testing"
)

// TestUnquoteJSON: unquoteJSON gives what json.Unmarshal gives for a JSON
// string, and refuses what it refuses (escapes, surrogates, invalid UTF-8,
// control characters).
func TestUnquoteJSON(t *testing.T) {
	for _, in := range []string{
		``, `plain`, `a\"b`, `\\`, `\/`, `\b\f\n\r\t`, `\u00e9`, `\u00E9x`, `\ud83d\ude00`,
		`\ud83d`, `\ud83dx`, `\ud83d\u0041`, `\ude00\ud83d`, `\ud83d\ud83d\ude00`, `\'`, `\x`, `\u12`,
		`\u12G4`, `\ud83d\u12G4`, "a\x01b", "tab\there", "\xff", "\xed\xa0\x80", "é\\n\xc3", `[{\"Key\":\"userAgent\",\"Value\":\"Mozilla/5.0\"}]`,
		`"`, `\`, `\u0000`,
	} {
		got, ok := unquoteJSON([]byte(in))
		var want string
		err := json.Unmarshal([]byte(`"`+in+`"`), &want)
		if ok != (err == nil) || got != want {
			t.Errorf("%q: got %q %v, want %q (error %v)", in, got, ok, want, err)
		}
	}
}

// FuzzUnquoteJSON: the same for any bytes.
func FuzzUnquoteJSON(f *testing.F) {
	for _, s := range []string{`a\"b`, `\ud83d\ude00`, "\xff", `\u12G4`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := unquoteJSON(in)
		var want string
		err := json.Unmarshal(append(append([]byte{'"'}, in...), '"'), &want)
		if ok != (err == nil) || got != want {
			t.Fatalf("%q: got %q %v, want %q (error %v)", in, got, ok, want, err)
		}
	})
}
