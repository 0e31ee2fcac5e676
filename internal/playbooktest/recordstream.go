package playbooktest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Records calls emit with each record of r as it is read (see recordStream);
// file names the input in errors. It stops at the first error, emit's
// included. emit must not keep the record past its call unless it copies it.
func Records(r io.Reader, file string, emit func(json.RawMessage) error) error {
	return newRecordStream(r).each(emit, file)
}

// recordStream splits its input into records as they are read: top-level
// JSON objects (a JSON object per record, NDJSON, or concatenated values),
// the elements of top-level arrays, and the elements of a Graph list
// response's "value" array, which is streamed: neither an array nor a list is
// ever held whole, only the record being read.
//
// It checks the structure it walks (brackets, strings, separators) and emits
// each record's bytes as they were written; the grammar inside a record is
// checked by its reader (event.Normalize validates the whole record), so a
// record that is not valid JSON reaches emit and is reported there.
type recordStream struct {
	r   *bufio.Reader
	off int64 // bytes consumed
}

func newRecordStream(r io.Reader) *recordStream {
	return &recordStream{r: bufio.NewReaderSize(r, 64<<10)}
}

// errRecordTooLarge: one record is larger than maxRecordBytes.
var errRecordTooLarge = fmt.Errorf("a record larger than %d bytes", maxRecordBytes)

func (rs *recordStream) fail(file string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.off, err)
}

func (rs *recordStream) readByte() (byte, error) {
	c, err := rs.r.ReadByte()
	if err == nil {
		rs.off++
	}
	return c, err
}

func (rs *recordStream) unread() {
	_ = rs.r.UnreadByte()
	rs.off--
}

// next returns the next byte that is not JSON whitespace.
func (rs *recordStream) next() (byte, error) {
	for {
		c, err := rs.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (rs *recordStream) each(emit func(json.RawMessage) error, file string) error {
	// A byte order mark before the first value is tolerated (files saved
	// by Windows tools).
	if b, err := rs.r.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = rs.r.Discard(3)
		rs.off += 3
	}
	for {
		c, err := rs.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return rs.fail(file, err)
		}
		switch c {
		case '[':
			err = rs.elements(emit, file)
		case '{':
			err = rs.object(emit, file)
		default:
			return rs.fail(file, fmt.Errorf("want a JSON object or array, got %q", c))
		}
		if err != nil {
			return err
		}
	}
}

// elements emits each element of an array whose '[' was read, through ']'.
func (rs *recordStream) elements(emit func(json.RawMessage) error, file string) error {
	for first := true; ; first = false {
		c, err := rs.next()
		if err != nil {
			return rs.fail(file, err)
		}
		if c == ']' && first {
			return nil
		}
		if !first {
			switch c {
			case ']':
				return nil
			case ',':
				if c, err = rs.next(); err != nil {
					return rs.fail(file, err)
				}
			default:
				return rs.fail(file, fmt.Errorf("want ',' or ']' after an array element, got %q", c))
			}
		}
		v, err := rs.value(c, nil)
		if err != nil {
			return rs.fail(file, err)
		}
		if err := emit(v); err != nil {
			return err
		}
	}
}

// object reads an object whose '{' was read: a Graph list response when it
// has a "value" array (its elements are emitted as they are read, its other
// members ignored), else one record, its bytes as written.
func (rs *recordStream) object(emit func(json.RawMessage) error, file string) error {
	buf := []byte{'{'}
	isList := false
	for first := true; ; first = false {
		c, err := rs.next()
		if err != nil {
			return rs.fail(file, err)
		}
		if c == '}' && first {
			break
		}
		if !first {
			if c == '}' {
				break
			}
			if c != ',' {
				return rs.fail(file, fmt.Errorf("want ',' or '}' after an object member, got %q", c))
			}
			buf = append(buf, ',')
			if c, err = rs.next(); err != nil {
				return rs.fail(file, err)
			}
		}
		if c != '"' {
			return rs.fail(file, fmt.Errorf("want a member name, got %q", c))
		}
		keyAt := len(buf)
		if buf, err = rs.str(append(buf, '"')); err != nil {
			return rs.fail(file, err)
		}
		key := buf[keyAt:]
		if c, err = rs.next(); err != nil {
			return rs.fail(file, err)
		}
		if c != ':' {
			return rs.fail(file, fmt.Errorf("want ':' after a member name, got %q", c))
		}
		buf = append(buf, ':')
		if c, err = rs.next(); err != nil {
			return rs.fail(file, err)
		}
		if !isList && c == '[' && string(key) == `"value"` {
			isList = true
			if err := rs.elements(emit, file); err != nil {
				return err
			}
			continue
		}
		if buf, err = rs.value(c, buf); err != nil {
			return rs.fail(file, err)
		}
		if isList {
			buf = buf[:1] // a list's other members are not kept
		}
	}
	if isList {
		return nil
	}
	return emit(append(buf, '}'))
}

// value appends the value that starts with c (already read) to buf: an
// object or array through its closing bracket, a string, or a scalar.
func (rs *recordStream) value(c byte, buf []byte) ([]byte, error) {
	switch c {
	case '{', '[':
		return rs.nested(c, buf)
	case '"':
		return rs.str(append(buf, '"'))
	}
	buf = append(buf, c)
	for {
		c, err := rs.readByte()
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		switch c {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			rs.unread()
			return buf, nil
		}
		if buf = append(buf, c); len(buf) > maxRecordBytes {
			return nil, errRecordTooLarge
		}
	}
}

// nested appends an object or array whose opening bracket is open, through
// the bracket that closes it, checking that brackets pair up outside strings.
func (rs *recordStream) nested(open byte, buf []byte) ([]byte, error) {
	stack := []byte{open}
	buf = append(buf, open)
	for len(stack) > 0 {
		// Copy the run of bytes that cannot change the structure at once.
		chunk, err := rs.r.Peek(1)
		if err != nil {
			return nil, err
		}
		n := 0
		if avail := rs.r.Buffered(); avail > 1 {
			chunk, _ = rs.r.Peek(avail)
		}
		for n < len(chunk) {
			switch chunk[n] {
			case '{', '[', '}', ']', '"':
				goto structural
			}
			n++
		}
	structural:
		if n > 0 {
			buf = append(buf, chunk[:n]...)
			_, _ = rs.r.Discard(n)
			rs.off += int64(n)
			if len(buf) > maxRecordBytes {
				return nil, errRecordTooLarge
			}
			continue
		}
		c, err := rs.readByte()
		if err != nil {
			return nil, err
		}
		switch c {
		case '"':
			if buf, err = rs.str(append(buf, '"')); err != nil {
				return nil, err
			}
			continue
		case '{', '[':
			stack = append(stack, c)
		case '}', ']':
			want := byte('{')
			if c == ']' {
				want = '['
			}
			if stack[len(stack)-1] != want {
				return nil, fmt.Errorf("%q closes %q", c, stack[len(stack)-1])
			}
			stack = stack[:len(stack)-1]
		}
		buf = append(buf, c)
	}
	if len(buf) > maxRecordBytes {
		return nil, errRecordTooLarge
	}
	return buf, nil
}

// str appends the rest of a string whose opening quote was read (and is in
// buf already), through the closing quote.
func (rs *recordStream) str(buf []byte) ([]byte, error) {
	for {
		chunk, err := rs.r.Peek(1)
		if err != nil {
			return nil, err
		}
		if avail := rs.r.Buffered(); avail > 1 {
			chunk, _ = rs.r.Peek(avail)
		}
		i := bytes.IndexAny(chunk, "\"\\")
		if i < 0 {
			buf = append(buf, chunk...)
			_, _ = rs.r.Discard(len(chunk))
			rs.off += int64(len(chunk))
			if len(buf) > maxRecordBytes {
				return nil, errRecordTooLarge
			}
			continue
		}
		buf = append(buf, chunk[:i+1]...)
		_, _ = rs.r.Discard(i + 1)
		rs.off += int64(i + 1)
		if chunk[i] == '"' {
			return buf, nil
		}
		// A backslash: the next byte is escaped, whatever it is.
		c, err := rs.readByte()
		if err != nil {
			return nil, err
		}
		buf = append(buf, c)
	}
}
