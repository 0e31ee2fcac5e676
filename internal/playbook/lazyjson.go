package playbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
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
func scanString(data []byte, i int) (end int, escaped bool, err error) {
	// The next quote, then whether a backslash comes before it: vectorised
	// scans (IndexAny builds a set on every call), each byte read at most
	// twice however many escapes there are.
	j, q := i+1, -1 // q: the first quote at or after j, once found
	for j < len(data) {
		if q < j {
			k := bytes.IndexByte(data[j:], '"')
			if k < 0 {
				break
			}
			q = j + k
		}
		k := bytes.IndexByte(data[j:q], '\\')
		if k < 0 {
			return q + 1, escaped, nil
		}
		escaped = true
		j += k + 2
	}
	return 0, false, errors.New("unterminated string")
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

// skipContainer returns the index after the object or array at i: strings
// are skipped whole, every closer must match its opener, and nesting is
// bounded. The grammar between brackets (separators, literals) is checked
// when the value is decoded, as the rest of a value's details are.
func skipContainer(data []byte, i int) (int, error) {
	var open [maxScanDepth / 64]uint64 // bit set: '{' at that depth, else '['
	depth := 0
	for j := i; j < len(data); j++ {
		switch c := data[j]; c {
		case '"':
			end, _, err := scanString(data, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '{', '[':
			if depth >= maxScanDepth {
				return 0, errors.New("nesting too deep")
			}
			if c == '{' {
				open[depth/64] |= 1 << (depth % 64)
			} else {
				open[depth/64] &^= 1 << (depth % 64)
			}
			depth++
		case '}', ']':
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
// (numbers as float64), with fast paths for plain strings and literals.
func decodeValue(b []byte) (any, bool) {
	if len(b) == 0 {
		return nil, false
	}
	switch b[0] {
	case '"':
		if len(b) >= 2 && bytes.IndexByte(b[1:len(b)-1], '\\') < 0 && bytes.IndexByte(b[1:len(b)-1], '"') < 0 {
			return string(b[1 : len(b)-1]), true
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
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false
	}
	return v, true
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
