package matchbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbooktest"
)

// maxFixtureBytes bounds one fixture file read.
const maxFixtureBytes = 64 << 20

// PublicRecords reads every record of the public fixtures under dir that
// event.Normalize recognises (SEKOIA files unwrapped, lists and NDJSON
// split), as raw JSON.
func PublicRecords(dir string) ([]json.RawMessage, error) {
	if dir == "" {
		return nil, errors.New("matchbench: no fixtures directory")
	}
	var out []json.RawMessage
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".log")) {
			return err
		}
		data, err := readBounded(path)
		if err != nil {
			return err
		}
		if strings.Contains(path, "sekoia") {
			var f struct {
				Input struct{ Message string } `json:"input"`
			}
			if json.Unmarshal(data, &f) == nil && f.Input.Message != "" {
				data = []byte(f.Input.Message)
			}
		}
		// A file that is not a stream of JSON records (some fixtures are
		// other formats) contributes the records read before the error.
		_ = playbooktest.Records(bytes.NewReader(data), path, func(raw json.RawMessage) error {
			if _, err := event.Normalize("", raw); err == nil {
				out = append(out, bytes.Clone(raw))
			}
			return nil
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("matchbench: fixtures: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("matchbench: no records under %s", dir)
	}
	return out, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFixtureBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFixtureBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFixtureBytes)
	}
	return data, nil
}

// Corpus generates the benchmark's events one at a time from the public
// records: event i is record i mod len, the copy number i / len giving it
// its own id, user and address (replaced in the raw record too), so that no
// two events of a run are the same and state (thresholds) sees many keys.
//
// At allocates one raw record per event (as a message buffer per event in
// the engine) and nothing more: the replacements are made in scratch
// buffers, so that the benchmark's own garbage does not load the collector
// that the measured phases share.
type Corpus struct {
	base    []event.Envelope
	scratch sync.Pool // *[]byte
}

// NewCorpus normalises recs; nil when none normalises.
func NewCorpus(recs []json.RawMessage) *Corpus {
	g := &Corpus{}
	for _, r := range recs {
		if env, err := event.Normalize("", r); err == nil {
			g.base = append(g.base, env)
		}
	}
	if len(g.base) == 0 {
		return nil
	}
	return g
}

// Len is the number of distinct records the corpus cycles through.
func (g *Corpus) Len() int { return len(g.base) }

// At returns event i, its raw record in a buffer of its own.
func (g *Corpus) At(i int) event.Envelope {
	env, _ := g.AtBuf(i, nil)
	return env
}

// AtBuf returns event i with its raw record written into buf (grown as
// needed; reused from the event before) and the buffer, for the caller to
// pass again: a harness that holds a batch of events at a time then makes
// no garbage of its own, and the collector's work during a measurement is
// the matcher's. The event's Raw is valid until buf is reused. A record
// that needs no change is the corpus's own (never write to it); buf is
// returned unused then.
func (g *Corpus) AtBuf(i int, buf []byte) (event.Envelope, []byte) {
	b := g.base[i%len(g.base)]
	copyN := i / len(g.base)
	env := b
	// The replacements, in order, each over the result of the last (as
	// bytes.ReplaceAll one after the other).
	var olds, news [3]string
	n := 0
	if b.ID != "" {
		id := b.ID + "-" + strconv.Itoa(copyN)
		olds[n], news[n] = b.ID, id
		n++
		env.ID = id
	}
	if b.User != "" && copyN > 0 {
		local, domain, _ := strings.Cut(b.User, "@")
		u := local + strconv.Itoa(copyN%997) + "@" + domain
		olds[n], news[n] = b.User, u
		n++
		env.User = u
	}
	if b.IP != "" && copyN > 0 && !strings.Contains(b.IP, ":") {
		if parts := strings.Split(b.IP, "."); len(parts) == 4 {
			ip := fmt.Sprintf("%s.%s.%d.%d", parts[0], parts[1], (copyN/250)%250, copyN%250+1)
			olds[n], news[n] = b.IP, ip
			n++
			env.IP = ip
		}
	}
	if n == 0 {
		return env, buf
	}
	bufs := [2]*[]byte{g.buf(), g.buf()}
	src := b.Raw
	for i := 0; i < n-1; i++ {
		dst := bufs[i%2]
		*dst = appendReplace((*dst)[:0], src, olds[i], news[i])
		src = *dst
	}
	// the last one into the event's own buffer, of the right size
	size := len(src) + bytes.Count(src, []byte(olds[n-1]))*(len(news[n-1])-len(olds[n-1]))
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	env.Raw = appendReplace(buf[:0], src, olds[n-1], news[n-1])
	g.scratch.Put(bufs[0])
	g.scratch.Put(bufs[1])
	return env, env.Raw
}

func (g *Corpus) buf() *[]byte {
	if b, ok := g.scratch.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// appendReplace appends src with every old replaced by new to dst: what
// bytes.ReplaceAll(src, old, new) returns (old is not empty).
func appendReplace(dst, src []byte, old, new string) []byte {
	for {
		i := bytes.Index(src, []byte(old))
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		dst = append(dst, new...)
		src = src[i+len(old):]
	}
}

// Events returns events [0, n).
func (g *Corpus) Events(n int) []event.Envelope {
	out := make([]event.Envelope, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, g.At(i))
	}
	return out
}
