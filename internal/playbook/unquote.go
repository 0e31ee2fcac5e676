package playbook

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// unquoteJSON decodes the inside of a JSON string (the bytes between its
// quotes) exactly as encoding/json does when it decodes a string: the
// escapes of RFC 8259 section 7, a \u surrogate pair joined into one rune, a
// lone or broken surrogate replaced by U+FFFD without consuming what follows
// it, and every byte of invalid UTF-8 replaced by U+FFFD (utf8.DecodeRune's
// one-byte error). It reports false for what is not a JSON string's inside
// (an unknown escape, an unescaped quote or control character). The model
// is unquoteBytes in the Go source, encoding/json/decode.go
// (https://cs.opensource.google/go/go/+/refs/tags/go1.24.0:src/encoding/json/decode.go);
// FuzzDecodeValue and TestUnquoteJSON hold it to json.Unmarshal.
// It replaces a json.Unmarshal call (reflection and a decode state per
// string) on the strings that hold escapes, such as the embedded JSON of a
// risk detection's additionalInfo.
func unquoteJSON(s []byte) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			if r >= len(s) {
				return "", false
			}
			switch s[r] {
			case '"', '\\', '/':
				b.WriteByte(s[r])
				r++
			case 'b':
				b.WriteByte('\b')
				r++
			case 'f':
				b.WriteByte('\f')
				r++
			case 'n':
				b.WriteByte('\n')
				r++
			case 'r':
				b.WriteByte('\r')
				r++
			case 't':
				b.WriteByte('\t')
				r++
			case 'u':
				rr := getu4(s[r-1:])
				if rr < 0 {
					return "", false
				}
				r += 5
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						r += 6
						b.WriteRune(dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				b.WriteRune(rr)
			default:
				// \' is accepted by unquoteBytes but refused by the
				// scanner that json.Unmarshal runs first.
				return "", false
			}
		case c == '"', c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b.WriteRune(rr)
		}
	}
	return b.String(), true
}

// getu4 decodes \uXXXX at the start of s, or returns -1 (encoding/json's
// getu4).
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
