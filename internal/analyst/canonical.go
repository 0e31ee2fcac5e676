package analyst

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// SignatureField is the top-level body member that Canonical leaves out, so a
// signature may also travel inside the body it signs.
const SignatureField = "signature"

// ErrNotCanonicalizable: the body is not one JSON object that has a canonical
// form (invalid JSON, invalid UTF-8, duplicate member names, trailing data).
var ErrNotCanonicalizable = errors.New("analyst: body has no canonical form")

// Canonical returns the canonical form of a JSON object: RFC 8785 (JSON
// Canonicalization Scheme) applied to body after removing the top-level member
// "signature". In short: no insignificant whitespace; object members sorted by
// their names compared as UTF-16 code units; strings escaped only where JSON
// requires (", \, and control characters, with \b \t \n \f \r and otherwise
// \u00xx in lower-case hex), everything else as literal UTF-8; numbers as
// ECMAScript prints an IEEE 754 double (1, 1.5, 1e+21, 1e-7; -0 as 0).
//
// Canonical is stricter than RFC 8785 in two ways that remove ambiguity between
// parsers: an object may not have two members whose names differ only in case
// (Go's decoder would treat them as the same field), and the body must be a
// single JSON object.
func Canonical(body []byte) ([]byte, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrNotCanonicalizable)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	v, err := readValue(dec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCanonicalizable, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrNotCanonicalizable)
	}
	obj, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrNotCanonicalizable)
	}
	obj = slices.DeleteFunc(obj, func(m member) bool { return m.name == SignatureField })
	var b bytes.Buffer
	if err := writeValue(&b, obj); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCanonicalizable, err)
	}
	return b.Bytes(), nil
}

type member struct {
	name  string
	value any
}

// object keeps members in input order until written.
type object []member

func readValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var obj object
			seen := map[string]string{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				name := kt.(string)
				folded := strings.ToLower(name)
				if prev, dup := seen[folded]; dup {
					return nil, fmt.Errorf("member names %q and %q collide", prev, name)
				}
				seen[folded] = name
				v, err := readValue(dec)
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{name: name, value: v})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := readValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default: // string, json.Number, bool, nil
		return t, nil
	}
}

func writeValue(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case object:
		sorted := slices.Clone(t)
		slices.SortFunc(sorted, func(x, y member) int { return compareUTF16(x.name, y.name) })
		b.WriteByte('{')
		for i, m := range sorted {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.name)
			b.WriteByte(':')
			if err := writeValue(b, m.value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case string:
		writeString(b, t)
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("number %s is not an IEEE 754 double", t)
		}
		b.WriteString(formatNumber(f))
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	default:
		return fmt.Errorf("unexpected value of type %T", v)
	}
	return nil
}

// formatNumber prints f as ECMAScript's Number.prototype.toString does, which is
// what RFC 8785 prescribes (and what encoding/json does for float64).
func formatNumber(f float64) string {
	if f == 0 {
		return "0" // also -0
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	s := strconv.FormatFloat(f, format, -1, 64)
	if format == 'e' {
		// Go prints e-07 where ECMAScript prints e-7.
		if i := strings.IndexByte(s, 'e'); i >= 0 && len(s) > i+3 && s[i+2] == '0' {
			s = s[:i+2] + s[i+3:]
		}
	}
	return s
}

func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// compareUTF16 orders strings by their UTF-16 code units (RFC 8785 §3.2.3).
func compareUTF16(a, b string) int {
	if a == b {
		return 0
	}
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}
