package playbook

import (
	"errors"
	"testing"
)

// refScanString is scanString byte by byte.
func refScanString(data []byte, i int) (int, bool, error) {
	esc := false
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc, nil
		}
	}
	return 0, false, errors.New("unterminated string")
}

// refSkipContainer is skipContainer with the reference string scan and a
// stack of openers.
func refSkipContainer(data []byte, i int) (int, error) {
	var stack []byte
	for j := i; j < len(data); j++ {
		switch c := data[j]; c {
		case '"':
			end, _, err := refScanString(data, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '{', '[':
			if len(stack) >= maxScanDepth {
				return 0, errors.New("nesting too deep")
			}
			stack = append(stack, c)
		case '}', ']':
			if len(stack) == 0 || (stack[len(stack)-1] == '{') != (c == '}') {
				return 0, errors.New("mismatched bracket")
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, errors.New("unterminated value")
}

// FuzzScan: the word-at-a-time string scan and the table-driven container
// skip find the same ends (and the same failures) as a byte-by-byte scan.
func FuzzScan(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"0123456789abcdef\\"`, `"unterminated`, `"\`,
		`{"a":[1,"]",{"b":"}\"{"}],"c":"x"}`, `[[[]]`, `{]`, `["ü", "\u00e9", "` + "\xff" + `"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		if b[0] == '"' {
			end, esc, err := scanString(b, 0)
			wantEnd, wantEsc, wantErr := refScanString(b, 0)
			if (err == nil) != (wantErr == nil) || end != wantEnd || (err == nil && esc != wantEsc) {
				t.Fatalf("scanString(%q) = %d %v %v, want %d %v %v", b, end, esc, err, wantEnd, wantEsc, wantErr)
			}
		}
		if b[0] == '{' || b[0] == '[' {
			end, err := skipContainer(b, 0)
			wantEnd, wantErr := refSkipContainer(b, 0)
			if (err == nil) != (wantErr == nil) || end != wantEnd {
				t.Fatalf("skipContainer(%q) = %d %v, want %d %v", b, end, err, wantEnd, wantErr)
			}
		}
	})
}

// BenchmarkScanObject: the members of the public records (MB/s of record).
func BenchmarkScanObject(b *testing.B) {
	recs := publicRecordsForTest(b)
	size := 0
	for _, r := range recs {
		size += len(r)
	}
	b.SetBytes(int64(size))
	var buf []member
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			buf, _ = scanObject(r, buf[:0])
		}
	}
}
