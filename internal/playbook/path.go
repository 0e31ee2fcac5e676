package playbook

import (
	"fmt"
	"strconv"
	"strings"
)

// The roots a field path or template reference may start with.
const (
	rootRaw  = "raw"
	rootElem = "." // the current list element inside any/all
)

// envFields are the envelope fields a path may name directly.
var envFields = map[string]bool{
	"id": true, "source": true, "kind": true, "time": true, "tenant_id": true,
	"user": true, "user_id": true, "ip": true, "mailbox": true, "rule_id": true,
	// Defender XDR alerts (source alert): the first of what the evidence
	// names (event.Envelope.AlertField).
	"device": true, "device_name": true, "sha256": true, "sha1": true, "url": true, "domain": true,
	"sender": true, "message_id": true, "network_message_id": true, "severity": true, "category": true,
	"service_source": true, "detection_source": true, "title": true,
}

// Helpers are derived values computed from the event on demand.
const (
	helperForwardRecipients  = "forward_recipients"
	helperExternalRecipients = "external_forward_recipients"
)

var helperFields = map[string]bool{
	helperForwardRecipients:  true,
	helperExternalRecipients: true,
}

// ref is a compiled field path: an envelope field, a helper, a path into the
// raw record, or a path relative to the current list element.
type ref struct {
	text string
	root string   // envelope field name, helper name, rootRaw or rootElem
	path []string // segments after the root (raw and element paths)
	// class: an envelope field or a helper, as parseRef found it (0: not
	// known, the root's name says).
	class uint8
}

const (
	refEnv    = 1 + iota // root is an envelope field
	refHelper            // root is a helper
)

func (r ref) String() string { return r.text }

// parseRef compiles a path. inElem allows element-relative paths (inside any/all:
// "." is the element, "Name" or ".Name" a key of it).
func parseRef(s string, inElem bool) (ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ref{}, fmt.Errorf("empty field path")
	}
	if inElem {
		if s == "." {
			return ref{text: s, root: rootElem}, nil
		}
		if !strings.HasPrefix(s, "raw.") && !strings.HasPrefix(s, "raw[") && s != "raw" && !envFields[s] && !helperFields[s] {
			segs, err := splitPath(strings.TrimPrefix(s, "."))
			if err != nil {
				return ref{}, fmt.Errorf("field %q: %w", s, err)
			}
			return ref{text: s, root: rootElem, path: segs}, nil
		}
	}
	if envFields[s] || helperFields[s] {
		class := uint8(refEnv)
		if helperFields[s] {
			class = refHelper
		}
		return ref{text: s, root: s, class: class}, nil
	}
	if s == rootRaw {
		return ref{text: s, root: rootRaw}, nil
	}
	if strings.HasPrefix(s, "raw.") || strings.HasPrefix(s, "raw[") {
		rest := strings.TrimPrefix(s[len("raw"):], ".")
		segs, err := splitPath(rest)
		if err != nil {
			return ref{}, fmt.Errorf("field %q: %w", s, err)
		}
		return ref{text: s, root: rootRaw, path: segs}, nil
	}
	return ref{}, fmt.Errorf("unknown field %q (want one of id, source, kind, time, tenant_id, user, user_id, ip, mailbox, rule_id, the alert fields device, device_name, sha256, sha1, url, domain, sender, message_id, network_message_id, severity, category, service_source, detection_source, title, %s, %s, or raw.<path>)",
		s, helperForwardRecipients, helperExternalRecipients)
}

// splitPath splits a.b["c.d"].0 into segments.
func splitPath(s string) ([]string, error) {
	var segs []string
	for len(s) > 0 {
		switch {
		case s[0] == '[' && len(s) > 1 && s[1] != '"':
			// [Name=ForwardTo]: the first list item whose Name is ForwardTo
			// (case-insensitive), for Exchange's [{Name, Value}] lists.
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf(`unterminated [key=value] segment`)
			}
			k, v, ok := strings.Cut(s[1:end], "=")
			if !ok || k == "" || v == "" {
				return nil, fmt.Errorf(`bracketed segment must be ["key"] or [key=value]`)
			}
			segs = append(segs, selMark+k+"="+v)
			s = strings.TrimPrefix(s[end+1:], ".")
		case s[0] == '[':
			if len(s) < 2 || s[1] != '"' {
				return nil, fmt.Errorf(`bracketed segment must be ["key"]`)
			}
			end := strings.Index(s[2:], `"]`)
			if end < 0 {
				return nil, fmt.Errorf(`unterminated ["key"] segment`)
			}
			segs = append(segs, s[2:2+end])
			s = s[2+end+2:]
			s = strings.TrimPrefix(s, ".")
		default:
			i := strings.IndexAny(s, ".[")
			seg := s
			if i >= 0 {
				seg = s[:i]
				s = s[i:]
				s = strings.TrimPrefix(s, ".")
			} else {
				s = ""
			}
			if seg == "" {
				return nil, fmt.Errorf("empty path segment")
			}
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("empty path")
	}
	return segs, nil
}

// walk follows path from v. Map keys match exactly, then case-insensitively
// (Microsoft spells the same field differently across workloads); a numeric
// segment indexes a list. A JSON string that holds a JSON object or array
// (RuleActions, additionalInfo) is decoded when the path goes into it.
func walk(v any, path []string) (any, bool) {
	ok := true
	for _, seg := range path {
		if s, ok := v.(string); ok {
			dec, ok := decodeEmbedded(s)
			if !ok {
				return nil, false
			}
			v = dec
		}
		if strings.HasPrefix(seg, selMark) {
			v, ok = selectItem(v, seg[len(selMark):])
			if !ok {
				return nil, false
			}
			continue
		}
		switch t := v.(type) {
		case map[string]any:
			var x any
			x, ok = t[seg]
			if !ok {
				// Deterministic fallback: the smallest key equal under case folding.
				best := ""
				for k, kv := range t {
					if strings.EqualFold(k, seg) && (!ok || k < best) {
						x, best, ok = kv, k, true
					}
				}
				if !ok {
					return nil, false
				}
			}
			v = x
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// selMark starts a [key=value] selector segment; it cannot occur in a key
// written in a playbook.
const selMark = "\x00sel:"

// selectItem returns the first item of a list whose key equals value, ignoring case.
func selectItem(v any, sel string) (any, bool) {
	k, want, _ := strings.Cut(sel, "=")
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	for _, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		if s, ok := scalarString(m[k]); ok && strings.EqualFold(s, want) {
			return m, true
		}
	}
	return nil, false
}
