package auditindex

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// The dimensions a record is indexed under.
const (
	DimAll      = "all" // every record (time-only and unfiltered pages)
	DimTarget   = "t"   // each value of Record.Target
	DimActor    = "a"   // Actor.Name and Actor.Kind
	DimAction   = "x"
	DimOutcome  = "o"
	DimPlaybook = "p"
	DimRequest  = "r"
)

// BucketSize is how many AUDIT sequences share one chunk subject per term.
const BucketSize = 1 << 14

// term is one (dimension, value) pair.
type term struct{ dim, value string }

// fold makes values that match without regard to case (audit.Filter uses
// strings.EqualFold for targets and actors) hash alike.
func fold(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// Key is the subject token of a dimension's value: 16 hex digits of SHA-256
// over the dimension and the value (folded for targets and actors).
func Key(dim, value string) string {
	if dim == DimTarget || dim == DimActor {
		value = fold(value)
	}
	h := sha256.New()
	h.Write([]byte(dim))
	h.Write([]byte{0})
	h.Write([]byte(value))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// indexed is the part of a record the index reads (decoding the whole record
// is not needed).
type indexed struct {
	Time      time.Time         `json:"time"`
	RequestID string            `json:"request_id"`
	Action    string            `json:"action"`
	Target    map[string]string `json:"target"`
	Actor     audit.Actor       `json:"actor"`
	Outcome   string            `json:"outcome"`
	Playbook  string            `json:"playbook"`
}

// recordTerms decodes a stored record and returns its time and terms (nil if
// the message is not a record).
func recordTerms(data []byte) (time.Time, []term, bool) {
	var r indexed
	if err := json.Unmarshal(data, &r); err != nil || r.Outcome == "" {
		return time.Time{}, nil, false
	}
	ts := []term{{DimAll, ""}, {DimOutcome, r.Outcome}}
	add := func(dim, v string) {
		if v == "" {
			return
		}
		t := term{dim, v}
		if dim == DimTarget || dim == DimActor {
			t.value = fold(v)
		}
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	add(DimAction, r.Action)
	add(DimPlaybook, r.Playbook)
	add(DimRequest, r.RequestID)
	add(DimActor, r.Actor.Name)
	add(DimActor, r.Actor.Kind)
	for _, v := range r.Target {
		add(DimTarget, v)
	}
	return r.Time, ts, true
}

// plan turns a filter into the index terms that every matching record is
// indexed under: each inner slice is one dimension's alternatives (a record
// matches if it has any of them), and a record must have one of every
// dimension. A filter with no indexed criterion plans to "all".
func plan(f audit.Filter) [][]term {
	var p [][]term
	one := func(dim, v string) {
		if v != "" {
			p = append(p, []term{{dim, v}})
		}
	}
	one(DimAction, f.Action)
	one(DimOutcome, f.Outcome)
	one(DimPlaybook, f.Playbook)
	one(DimRequest, f.RequestID)
	if f.Actor != "" {
		alts := []term{{DimActor, f.Actor}}
		if _, name, ok := strings.Cut(f.Actor, ":"); ok {
			alts = append(alts, term{DimActor, name}) // "kind:name"
		}
		p = append(p, alts)
	}
	if f.Target != "" {
		alts := []term{{DimTarget, f.Target}}
		if _, v, ok := strings.Cut(f.Target, "="); ok {
			alts = append(alts, term{DimTarget, v}) // "key=value"
		}
		p = append(p, alts)
	}
	if len(p) == 0 {
		p = [][]term{{{DimAll, ""}}}
	}
	return p
}

// entry is one indexed record: its AUDIT sequence and time (Unix seconds).
type entry struct {
	seq uint64
	sec int64
}

const chunkVersion = 1

// errChunk: a chunk message that does not decode (skipped by readers).
var errChunk = errors.New("auditindex: malformed chunk")

// encodeChunk writes entries (in ascending sequence order) as a version byte,
// a count, then per entry the sequence delta and the time delta as varints.
func encodeChunk(es []entry) []byte {
	b := make([]byte, 0, 2+len(es)*6)
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(len(es)))
	var seq uint64
	var sec int64
	for _, e := range es {
		b = binary.AppendUvarint(b, e.seq-seq)
		b = binary.AppendVarint(b, e.sec-sec)
		seq, sec = e.seq, e.sec
	}
	return b
}

// decodeChunk reads what encodeChunk wrote, appending to es.
func decodeChunk(b []byte, es []entry) ([]entry, error) {
	if len(b) < 2 || b[0] != chunkVersion {
		return es, errChunk
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return es, errChunk
	}
	b = b[k:]
	var seq uint64
	var sec int64
	for range n {
		d, k := binary.Uvarint(b)
		if k <= 0 {
			return es, errChunk
		}
		b = b[k:]
		ds, k := binary.Varint(b)
		if k <= 0 {
			return es, errChunk
		}
		b = b[k:]
		seq += d
		sec += ds
		es = append(es, entry{seq: seq, sec: sec})
	}
	return es, nil
}
