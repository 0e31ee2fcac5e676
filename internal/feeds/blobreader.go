package feeds

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Limits of arrayReader.
const (
	arrayReaderInitial = 64 << 10
	// maxRecordBytes bounds one record of a content blob: larger than any audit
	// record, and no larger than the embedded server's maximum payload.
	maxRecordBytes = 8 << 20
	maxNesting     = 10000 // as encoding/json
)

// arrayReader reads the elements of one JSON array from a stream, one at a
// time, in a buffer that holds only the element being read (memory does not
// grow with the size of the array). Each element is validated as JSON (the
// grammar encoding/json accepts) and returned compact; the slice is valid until
// the next call.
type arrayReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // unread bytes are buf[start:end]
	off        int64 // stream offset of buf[0], for errors
	eof        error // the reader's final error (io.EOF on a clean end)
	state      int
	scratch    []byte // compacted copy of an element that held whitespace
	sc         jsonScanner
}

const (
	arrBegin = iota // before '['
	arrFirst        // after '[': a value or ']'
	arrNext         // after a value: ',' or ']'
	arrDone
)

var errNeedMore = errors.New("feeds: need more input")

func newArrayReader(r io.Reader) *arrayReader {
	return &arrayReader{r: r, buf: make([]byte, arrayReaderInitial)}
}

// fill reads more input, keeping buf[start:end]; it grows the buffer when the
// unread part fills it.
func (a *arrayReader) fill() error {
	if a.eof != nil {
		if a.eof == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return a.eof
	}
	if a.start > 0 {
		n := copy(a.buf, a.buf[a.start:a.end])
		a.off += int64(a.start)
		a.start, a.end = 0, n
	}
	if a.end == len(a.buf) {
		if len(a.buf) >= maxRecordBytes {
			return fmt.Errorf("a record is larger than %d bytes", maxRecordBytes)
		}
		nb := make([]byte, min(2*len(a.buf), maxRecordBytes))
		copy(nb, a.buf[:a.end])
		a.buf = nb
	}
	n, err := a.r.Read(a.buf[a.end:])
	a.end += n
	if err != nil {
		a.eof = err
		if n == 0 {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// more reads until the unread input has doubled (or the input ends), so that
// rescanning an element from its start costs O(size) in all, however the
// reader splits its input.
func (a *arrayReader) more() error {
	have := a.end - a.start
	want := max(2*have, 4096)
	for {
		if err := a.fill(); err != nil {
			if a.end-a.start > have {
				return nil
			}
			return err
		}
		if a.end-a.start >= want || a.eof != nil {
			return nil
		}
	}
}

// Next returns the next element, or io.EOF after the closing ']'. Any other
// error is final.
func (a *arrayReader) Next() ([]byte, error) {
	for {
		switch a.state {
		case arrDone:
			return nil, io.EOF
		case arrBegin, arrFirst, arrNext:
			i := skipSpace(a.buf[a.start:a.end])
			a.start += i
			if a.start == a.end {
				if err := a.fill(); err != nil {
					return nil, a.wrap(err)
				}
				continue
			}
			c := a.buf[a.start]
			switch {
			case a.state == arrBegin:
				if c != '[' {
					return nil, a.syntax("want a JSON array, found %q", c)
				}
				a.start++
				a.state = arrFirst
				continue
			case c == ']':
				a.start++
				a.state = arrDone
				return nil, io.EOF
			case a.state == arrNext:
				if c != ',' {
					return nil, a.syntax("want ',' or ']' after an array element, found %q", c)
				}
				a.start++
				// The element itself may start after whitespace, or in the next read.
				for {
					a.start += skipSpace(a.buf[a.start:a.end])
					if a.start < a.end {
						break
					}
					if err := a.fill(); err != nil {
						return nil, a.wrap(err)
					}
				}
				if a.buf[a.start] == ']' {
					return nil, a.syntax("a ',' before ']'")
				}
			}
			return a.element()
		}
	}
}

// element scans the value at buf[start], reading more until it is complete.
func (a *arrayReader) element() ([]byte, error) {
	for {
		a.sc = jsonScanner{b: a.buf[a.start:a.end]}
		err := a.sc.value()
		if err == nil {
			// A number at the very end of the buffer may go on in the next read.
			if a.sc.i == len(a.sc.b) && isNumberEnd(a.sc.b) && a.eof == nil {
				err = errNeedMore
			}
		}
		if err == errNeedMore {
			if ferr := a.more(); ferr != nil {
				return nil, a.wrap(ferr)
			}
			continue
		}
		if err != nil {
			return nil, a.syntax("%v", err)
		}
		el := a.buf[a.start : a.start+a.sc.i]
		a.start += a.sc.i
		a.state = arrNext
		if a.sc.space {
			var out bytes.Buffer
			out.Grow(len(el))
			if err := json.Compact(&out, el); err != nil {
				return nil, a.syntax("%v", err)
			}
			a.scratch = append(a.scratch[:0], out.Bytes()...)
			el = a.scratch
		}
		return el, nil
	}
}

func isNumberEnd(b []byte) bool {
	c := b[len(b)-1]
	return c >= '0' && c <= '9'
}

func (a *arrayReader) wrap(err error) error {
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("JSON array cut off at byte %d: %w", a.off+int64(a.end), err)
	}
	return err
}

func (a *arrayReader) syntax(format string, args ...any) error {
	return fmt.Errorf("invalid JSON near byte %d: %s", a.off+int64(a.start), fmt.Sprintf(format, args...))
}

func skipSpace(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// jsonScanner validates one JSON value at the start of b (RFC 8259, as
// encoding/json: UTF-8 is not checked). It returns errNeedMore when b ends
// before the value does.
type jsonScanner struct {
	b     []byte
	i     int
	depth int
	space bool // whitespace inside the value
}

func (s *jsonScanner) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // the usual case: compact JSON
	}
	n := skipSpace(s.b[s.i:])
	if n > 0 {
		s.space = true
		s.i += n
	}
}

func (s *jsonScanner) value() error {
	if s.i >= len(s.b) {
		return errNeedMore
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		return fmt.Errorf("unexpected %q at the start of a value", c)
	}
}

func (s *jsonScanner) enter() error {
	s.depth++
	if s.depth > maxNesting {
		return errors.New("nested too deeply")
	}
	return nil
}

func (s *jsonScanner) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.i++ // '{'
	s.ws()
	if s.i >= len(s.b) {
		return errNeedMore
	}
	if s.b[s.i] == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.i >= len(s.b) {
			return errNeedMore
		}
		if s.b[s.i] != '"' {
			return fmt.Errorf("unexpected %q, want an object key", s.b[s.i])
		}
		if err := s.str(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errNeedMore
		}
		if s.b[s.i] != ':' {
			return fmt.Errorf("unexpected %q after an object key", s.b[s.i])
		}
		s.i++
		s.ws()
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errNeedMore
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return fmt.Errorf("unexpected %q after an object value", s.b[s.i])
		}
	}
}

func (s *jsonScanner) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.i++ // '['
	s.ws()
	if s.i >= len(s.b) {
		return errNeedMore
	}
	if s.b[s.i] == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errNeedMore
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return fmt.Errorf("unexpected %q after an array element", s.b[s.i])
		}
	}
}

// strSafe: bytes that go into a string as they are.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hasStrSpecial reports whether one of the 8 bytes of x is '"', '\\' or a
// control character.
func hasStrSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (x-0x20*ones)&^x&highs|zero(x^'"'*ones)|zero(x^'\\'*ones) != 0
}

func (s *jsonScanner) str() error {
	b := s.b
	i := s.i + 1
	for {
		for i+8 <= len(b) && !hasStrSpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && strSafe[b[i]] {
			i++
		}
		if i >= len(b) {
			return errNeedMore
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return nil
		case c < 0x20:
			return fmt.Errorf("control character %#02x in a string", c)
		}
		// '\\'
		if i+1 >= len(b) {
			return errNeedMore
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) {
				return errNeedMore
			}
			for _, h := range b[i+2 : i+6] {
				if !isHexDigit(h) {
					return fmt.Errorf("invalid \\u escape")
				}
			}
			i += 6
		default:
			return fmt.Errorf("invalid escape \\%c", b[i+1])
		}
	}
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *jsonScanner) lit(want string) error {
	rest := s.b[s.i:]
	if len(rest) < len(want) {
		if string(rest) == want[:len(rest)] {
			return errNeedMore
		}
		return fmt.Errorf("invalid literal")
	}
	if string(rest[:len(want)]) != want {
		return fmt.Errorf("invalid literal")
	}
	s.i += len(want)
	return nil
}

func (s *jsonScanner) number() error {
	b := s.b
	i := s.i
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - j
	}
	if i >= len(b) {
		return errNeedMore
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		digits()
	default:
		return fmt.Errorf("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			if i >= len(b) {
				return errNeedMore
			}
			return fmt.Errorf("invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			if i >= len(b) {
				return errNeedMore
			}
			return fmt.Errorf("invalid number")
		}
	}
	s.i = i
	return nil
}
