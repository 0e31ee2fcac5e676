package playbooktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// refRecordStream is the former record splitter (encoding/json's Decoder,
// token by token), kept as the reference of the differential test.
// refRecordStream walks top-level JSON values token by token so that arrays and
// "value" lists are never held whole.
type refRecordStream struct {
	dec *json.Decoder
}

func (rs *refRecordStream) each(emit func(json.RawMessage) error, file string) error {
	for {
		tok, err := rs.dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
		}
		switch tok {
		case json.Delim('['):
			if err := rs.elements(emit, file); err != nil {
				return err
			}
		case json.Delim('{'):
			if err := rs.object(emit, file); err != nil {
				return err
			}
		default:
			return fmt.Errorf("playbook test: %s: offset %d: want a JSON object or array, got %v", file, rs.dec.InputOffset(), tok)
		}
	}
}

// elements emits each element of an array whose '[' was read, then reads ']'.
func (rs *refRecordStream) elements(emit func(json.RawMessage) error, file string) error {
	for rs.dec.More() {
		var m json.RawMessage
		if err := rs.dec.Decode(&m); err != nil {
			return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
		}
		if len(m) > maxRecordBytes {
			return fmt.Errorf("playbook test: %s: a record of %d bytes is larger than %d", file, len(m), maxRecordBytes)
		}
		if err := emit(m); err != nil {
			return err
		}
	}
	if _, err := rs.dec.Token(); err != nil {
		return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
	}
	return nil
}

// object reads an object whose '{' was read: a Graph list response when it
// has a "value" array (its elements are emitted as they are read, its other
// members ignored), else one record rebuilt from its members in order.
func (rs *refRecordStream) object(emit func(json.RawMessage) error, file string) error {
	var buf bytes.Buffer
	buf.WriteByte('{')
	members, isList := 0, false
	for rs.dec.More() {
		kt, err := rs.dec.Token()
		if err != nil {
			return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
		}
		key, _ := kt.(string)
		if key == "value" && !isList {
			vt, err := rs.dec.Token()
			if err != nil {
				return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
			}
			if vt == json.Delim('[') {
				isList = true
				if err := rs.elements(emit, file); err != nil {
					return err
				}
				continue
			}
			// "value" that is not an array: keep it as a member.
			v, err := rs.rest(vt)
			if err != nil {
				return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
			}
			rs.member(&buf, &members, key, v)
			continue
		}
		var v json.RawMessage
		if err := rs.dec.Decode(&v); err != nil {
			return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
		}
		if !isList {
			rs.member(&buf, &members, key, v)
			if buf.Len() > maxRecordBytes {
				return fmt.Errorf("playbook test: %s: a record larger than %d bytes", file, maxRecordBytes)
			}
		}
	}
	if _, err := rs.dec.Token(); err != nil { // '}'
		return fmt.Errorf("playbook test: %s: offset %d: %w", file, rs.dec.InputOffset(), err)
	}
	if isList {
		return nil
	}
	buf.WriteByte('}')
	return emit(json.RawMessage(buf.Bytes()))
}

func (rs *refRecordStream) member(buf *bytes.Buffer, n *int, key string, v json.RawMessage) {
	if *n > 0 {
		buf.WriteByte(',')
	}
	*n++
	k, _ := json.Marshal(key)
	buf.Write(k)
	buf.WriteByte(':')
	buf.Write(v)
}

// rest rebuilds the JSON of a value whose first token was already read.
func (rs *refRecordStream) rest(first json.Token) (json.RawMessage, error) {
	switch t := first.(type) {
	case json.Delim:
		var buf bytes.Buffer
		switch t {
		case '{':
			buf.WriteByte('{')
			for i := 0; rs.dec.More(); i++ {
				kt, err := rs.dec.Token()
				if err != nil {
					return nil, err
				}
				var v json.RawMessage
				if err := rs.dec.Decode(&v); err != nil {
					return nil, err
				}
				if i > 0 {
					buf.WriteByte(',')
				}
				k, _ := json.Marshal(kt)
				buf.Write(k)
				buf.WriteByte(':')
				buf.Write(v)
			}
			buf.WriteByte('}')
		case '[':
			buf.WriteByte('[')
			for i := 0; rs.dec.More(); i++ {
				var v json.RawMessage
				if err := rs.dec.Decode(&v); err != nil {
					return nil, err
				}
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(v)
			}
			buf.WriteByte(']')
		default:
			return nil, fmt.Errorf("unexpected %v", t)
		}
		if _, err := rs.dec.Token(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	default:
		b, err := json.Marshal(t)
		return b, err
	}
}
