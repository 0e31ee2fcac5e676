package playbooktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// split runs a splitter over in and returns the records (decoded, so that
// the former splitter's re-encoded members compare equal) and the error.
func splitNew(in []byte) ([]any, error) {
	var out []any
	err := newRecordStream(bytes.NewReader(in)).each(func(raw json.RawMessage) error {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, "in")
	return out, err
}

func splitRef(in []byte) ([]any, error) {
	var out []any
	rs := &refRecordStream{dec: json.NewDecoder(bytes.NewReader(in))}
	rs.dec.UseNumber()
	err := rs.each(func(raw json.RawMessage) error {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}, "in")
	return out, err
}

// TestRecordStreamMatchesReference: on valid input the streaming splitter
// emits the records the former encoding/json splitter emitted, in order:
// every public fixture file, the shipped samples and hand-made shapes.
func TestRecordStreamMatchesReference(t *testing.T) {
	inputs := map[string][]byte{
		"object":          []byte(`{"a":1,"b":[1,2,{"c":"}]\"{"}]}`),
		"ndjson":          []byte("{\"a\":1}\n{\"b\":\"x\\\"y\"}\r\n\n{\"c\":null}\n"),
		"array":           []byte(` [ {"a":1} , {"b":2} ] `),
		"empty array":     []byte(`[]`),
		"empty object":    []byte(`{}`),
		"list":            []byte(`{"@odata.context":"x","value":[{"a":1},{"b":[{"value":[1]}]}],"@odata.nextLink":"y"}`),
		"list first":      []byte(`{"value":[{"a":1}]}`),
		"value not array": []byte(`{"value":"x","a":{"value":[1]}}`),
		"mixed":           []byte(`[{"a":1}]{"value":[{"b":2}]}{"c":3}`),
		"escapes":         []byte(`{"k\"ey":"v\\","u":"\u00e9\ud83d\ude00","n":-1.5e3,"t":true,"f":false}`),
		"nested arrays":   []byte(`[[1,2],[{"a":[]}]]`),
	}
	add := func(name string) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		inputs[name] = b
	}
	samples, _ := filepath.Glob(filepath.Join(shippedDir, "testdata", "*.json"))
	for _, f := range samples {
		add(f)
	}
	if _, err := os.Stat(fixturesDir); err == nil {
		_ = filepath.WalkDir(fixturesDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".log")) {
				add(p)
			}
			return nil
		})
	} else {
		t.Log("public fixtures absent: hand-made inputs and samples only")
	}
	compared := 0
	for name, in := range inputs {
		want, werr := splitRef(in)
		if werr != nil {
			continue // not a stream of JSON values (some fixtures are other formats)
		}
		got, err := splitNew(in)
		if err != nil {
			t.Errorf("%s: %v (the former splitter read %d records)", name, err, len(want))
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d records, want %d; first difference in %v", name, len(got), len(want), firstDiff(got, want))
		}
		compared++
	}
	if compared < 20 {
		t.Errorf("only %d inputs compared", compared)
	}
}

func firstDiff(a, b []any) string {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			x, _ := json.Marshal(a[i])
			y, _ := json.Marshal(b[i])
			return string(x) + " vs " + string(y)
		}
	}
	return "length"
}

// TestRecordStreamRejects: broken structure stops the file with the offset;
// a record that is not JSON inside stops Run with its index.
func TestRecordStreamRejects(t *testing.T) {
	for name, in := range map[string]string{
		"scalar":           `42`,
		"unclosed":         `{"a":[1,2}`,
		"truncated":        `[{"a":1},{"b":`,
		"no colon":         `{"a" 1}`,
		"bad separator":    `[{"a":1};{"b":2}]`,
		"unquoted key":     `{a:1}`,
		"open string":      `{"a":"x}`,
		"closing mismatch": `[{"a":1]]`,
	} {
		_, err := splitNew([]byte(in))
		if err == nil || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: %v, want an error with the offset", name, err)
		}
	}
	set := loadShipped(t)
	err := Run(t.Context(), set, strings.NewReader(`{"a":1}`+"\n"+`{"b":tru}`), "bad.ndjson", io.Discard, true)
	var se *json.SyntaxError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "record 1") {
		t.Errorf("a record that is not JSON: %v, want a syntax error naming record 1", err)
	}
}

// FuzzRecordStream: any input either splits into the records the former
// splitter finds or is refused with a reason; nothing panics, and an input
// the former splitter accepts is accepted with the same records.
func FuzzRecordStream(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "[{\"a\":1},{\"b\":[2]}]", `{"value":[{"a":"}"}]}`, "{\"a\":1}\n{\"b\":2}", `[{"a":1]]`, `{"a":"\"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := splitNew(in)
		want, werr := splitRef(in)
		if werr == nil {
			if err != nil {
				t.Fatalf("refused %q: %v; the former splitter read %d records", in, err, len(want))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: %v, want %v", in, got, want)
			}
		}
		if err != nil && err.Error() == "" {
			t.Fatal("an error without a reason")
		}
	})
}
