package playbook

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// Lazy decoding: a record is scanned once for its top-level members (key and
// value bytes, nothing decoded), and a member's value is decoded only when a
// condition first reads it. Most conditions read two or three members of a
// record that has thirty, some of them large (Parameters, ModifiedProperties,
// authenticationDetails), so this is most of the matcher's speed.

var errNotObject = errors.New("not a JSON object")

// member is one top-level member of a record.
type member struct {
	key  []byte // raw key bytes (without quotes); escaped keys are decoded
	val  []byte // raw value bytes
	v    any
	done bool
	bad  bool
}

// scanObject appends the members of the JSON object in data to out. It checks
// the structure it skips (strings, nesting), not every detail of the grammar;
// a value that is not valid JSON fails when it is decoded.
func scanObject(data []byte, out []member) ([]member, error) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return out, errNotObject
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		if skipWS(data, i+1) != len(data) {
			return out, errors.New("data after the object")
		}
		return out, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return out, errors.New("object key expected")
		}
		end, esc, err := scanString(data, i)
		if err != nil {
			return out, err
		}
		key := data[i+1 : end-1]
		if esc {
			var s string
			if json.Unmarshal(data[i:end], &s) != nil {
				return out, errors.New("bad key")
			}
			key = []byte(s)
		}
		i = skipWS(data, end)
		if i >= len(data) || data[i] != ':' {
			return out, errors.New("':' expected")
		}
		i = skipWS(data, i+1)
		vend, err := skipValue(data, i, 0)
		if err != nil {
			return out, err
		}
		out = append(out, member{key: key, val: data[i:vend]})
		i = skipWS(data, vend)
		if i >= len(data) {
			return out, errors.New("unterminated object")
		}
		if data[i] == '}' {
			if skipWS(data, i+1) != len(data) {
				return out, errors.New("data after the object")
			}
			return out, nil
		}
		if data[i] != ',' {
			return out, errors.New("',' or '}' expected")
		}
		i = skipWS(data, i+1)
	}
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the closing quote of the string at i.
// It looks for the next quote or backslash eight bytes at a time (the bytes
// of one 64-bit word at once), then byte by byte in the last few.
func scanString(data []byte, i int) (end int, escaped bool, err error) {
	j := i + 1
	for {
		for j+8 <= len(data) {
			if m := quoteOrBackslash(binary.LittleEndian.Uint64(data[j:])); m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		for j < len(data) && data[j] != '"' && data[j] != '\\' {
			j++
		}
		if j >= len(data) {
			return 0, false, errors.New("unterminated string")
		}
		if data[j] == '"' {
			return j + 1, escaped, nil
		}
		// a backslash: the next byte is escaped, whatever it is
		escaped = true
		j += 2
	}
}

// quoteOrBackslash has the high bit set in the lowest byte of x that is a
// quote or a backslash (and possibly in bytes above it, never below: the
// classic "has zero byte" test is exact for the lowest one).
func quoteOrBackslash(x uint64) uint64 {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	q := x ^ (ones * '"')
	b := x ^ (ones * '\\')
	return ((q-ones)&^q | (b-ones)&^b) & high
}

// skipValue returns the index after the value at i.
func skipValue(data []byte, i, depth int) (int, error) {
	if i >= len(data) {
		return 0, errors.New("value expected")
	}
	if depth > 512 {
		return 0, errors.New("nesting too deep")
	}
	switch c := data[i]; c {
	case '"':
		end, _, err := scanString(data, i)
		return end, err
	case '{', '[':
		return skipContainer(data, i)
	default:
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, errors.New("value expected")
				}
				return j, nil
			}
			j++
		}
		if j == i {
			return 0, errors.New("value expected")
		}
		return j, nil
	}
}

// maxScanDepth bounds the nesting skipContainer follows.
const maxScanDepth = 512

// jsonClass sorts the bytes skipContainer looks at: 1 a quote, 2 an
// opener, 3 a closer, 0 anything else.
var jsonClass = [256]uint8{'"': 1, '{': 2, '[': 2, '}': 3, ']': 3}

// skipContainer returns the index after the object or array at i: strings
// are skipped whole, every closer must match its opener, and nesting is
// bounded. The grammar between brackets (separators, literals) is checked
// when the value is decoded, as the rest of a value's details are.
func skipContainer(data []byte, i int) (int, error) {
	var open [maxScanDepth / 64]uint64 // bit set: '{' at that depth, else '['
	depth := 0
	for j := i; j < len(data); j++ {
		c := data[j]
		switch jsonClass[c] {
		case 0:
			continue
		case 1:
			end, _, err := scanString(data, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case 2:
			if depth >= maxScanDepth {
				return 0, errors.New("nesting too deep")
			}
			if c == '{' {
				open[depth/64] |= 1 << (depth % 64)
			} else {
				open[depth/64] &^= 1 << (depth % 64)
			}
			depth++
		case 3:
			depth--
			if depth < 0 || (open[depth/64]&(1<<(depth%64)) != 0) != (c == '}') {
				return 0, errors.New("mismatched bracket")
			}
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, errors.New("unterminated value")
}

// decodeValue decodes one JSON value as encoding/json would into an any
// (numbers as float64), with a hand-written decoder for the common cases.
func decodeValue(b []byte) (any, bool) {
	if len(b) == 0 {
		return nil, false
	}
	switch b[0] {
	case '"':
		d := valueDecoder{data: b}
		if v, ok := d.str(); ok && d.pos == len(b) {
			return v, true
		}
	case 't':
		if string(b) == "true" {
			return true, true
		}
	case 'f':
		if string(b) == "false" {
			return false, true
		}
	case 'n':
		if string(b) == "null" {
			return nil, true
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if numberBytes(b) {
			if f, err := strconv.ParseFloat(string(b), 64); err == nil {
				return f, true
			}
		}
	case '{', '[':
		// A hand-written decoder for objects and lists; anything it is not
		// sure of (an escape, invalid UTF-8, deep nesting, a number out of
		// range) is left to encoding/json, whose result it otherwise equals.
		d := valueDecoder{data: b}
		d.vals, d.keys = d.scratch[:0], d.kscr[:0]
		if v, ok := d.value(0); ok && skipWS(b, d.pos) == len(b) {
			return v, true
		} else if !d.unsure {
			return nil, false
		}
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false
	}
	return v, true
}

// valueDecoder decodes JSON into the values encoding/json gives an any:
// map[string]any, []any, string, float64, bool and nil. It fails with unsure
// set where encoding/json may decide otherwise, and without where the input
// is not JSON.
type valueDecoder struct {
	data   []byte
	pos    int
	unsure bool
	// the members and items of the containers being decoded, innermost last
	keys    []string
	vals    []any
	scratch [32]any
	kscr    [16]string
}

// maxDecodeDepth: deeper values are left to encoding/json.
const maxDecodeDepth = 256

func (d *valueDecoder) value(depth int) (any, bool) {
	d.pos = skipWS(d.data, d.pos)
	if d.pos >= len(d.data) {
		return nil, false
	}
	switch c := d.data[d.pos]; c {
	case '{':
		if depth >= maxDecodeDepth {
			d.unsure = true
			return nil, false
		}
		d.pos++
		// Members are gathered on the decoder's stack, then put in a map
		// made to size.
		kb, vb := len(d.keys), len(d.vals)
		d.pos = skipWS(d.data, d.pos)
		if d.pos < len(d.data) && d.data[d.pos] == '}' {
			d.pos++
			return map[string]any{}, true
		}
		for {
			d.pos = skipWS(d.data, d.pos)
			if d.pos >= len(d.data) || d.data[d.pos] != '"' {
				return nil, false
			}
			k, ok := d.str()
			if !ok {
				return nil, false
			}
			d.pos = skipWS(d.data, d.pos)
			if d.pos >= len(d.data) || d.data[d.pos] != ':' {
				return nil, false
			}
			d.pos++
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			d.keys = append(d.keys, k)
			d.vals = append(d.vals, v)
			d.pos = skipWS(d.data, d.pos)
			if d.pos >= len(d.data) {
				return nil, false
			}
			if d.data[d.pos] == '}' {
				d.pos++
				m := make(map[string]any, len(d.keys)-kb)
				for i := range len(d.keys) - kb {
					m[d.keys[kb+i]] = d.vals[vb+i] // the last of duplicate keys, as encoding/json
				}
				clear(d.vals[vb:])
				d.keys, d.vals = d.keys[:kb], d.vals[:vb]
				return m, true
			}
			if d.data[d.pos] != ',' {
				return nil, false
			}
			d.pos++
		}
	case '[':
		if depth >= maxDecodeDepth {
			d.unsure = true
			return nil, false
		}
		d.pos++
		base := len(d.vals)
		d.pos = skipWS(d.data, d.pos)
		if d.pos < len(d.data) && d.data[d.pos] == ']' {
			d.pos++
			return []any{}, true
		}
		for {
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			d.vals = append(d.vals, v)
			d.pos = skipWS(d.data, d.pos)
			if d.pos >= len(d.data) {
				return nil, false
			}
			if d.data[d.pos] == ']' {
				d.pos++
				l := make([]any, len(d.vals)-base)
				copy(l, d.vals[base:])
				clear(d.vals[base:])
				d.vals = d.vals[:base]
				return l, true
			}
			if d.data[d.pos] != ',' {
				return nil, false
			}
			d.pos++
		}
	case '"':
		return d.str()
	case 't':
		return d.literal("true", true)
	case 'f':
		return d.literal("false", false)
	case 'n':
		return d.literal("null", nil)
	}
	return d.number()
}

func (d *valueDecoder) literal(lit string, v any) (any, bool) {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return nil, false
	}
	d.pos += len(lit)
	return v, true
}

// str decodes the string at d.pos: plain ones here, escaped or invalid UTF-8
// ones by unquoteJSON (encoding/json's rules: invalid bytes become U+FFFD).
func (d *valueDecoder) str() (string, bool) {
	start := d.pos + 1
	i := start
	ascii := true
	for ; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", false // not JSON
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
		if c == '\\' {
			// left to encoding/json: the string's end is found by the scanner
			end, _, err := scanString(d.data, d.pos)
			if err != nil {
				return "", false
			}
			s, ok := unquoteJSON(d.data[start : end-1])
			if !ok {
				return "", false
			}
			d.pos = end
			return s, true
		}
	}
	if i >= len(d.data) {
		return "", false
	}
	if !ascii && !utf8.Valid(d.data[start:i]) {
		s, ok := unquoteJSON(d.data[start:i])
		if !ok {
			return "", false
		}
		d.pos = i + 1
		return s, true
	}
	d.pos = i + 1
	return string(d.data[start:i]), true
}

// number decodes a JSON number (the grammar exactly) as a float64.
func (d *valueDecoder) number() (any, bool) {
	b, i := d.data, d.pos
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	f, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil {
		d.unsure = true // out of range: encoding/json's error
		return nil, false
	}
	d.pos = i
	return f, true
}

// numberBytes: only the characters of a JSON number.
func numberBytes(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
		default:
			return false
		}
	}
	return true
}
