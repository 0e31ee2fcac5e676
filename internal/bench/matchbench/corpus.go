package matchbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
type Corpus struct {
	base []event.Envelope
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

// At returns event i.
func (g *Corpus) At(i int) event.Envelope {
	b := g.base[i%len(g.base)]
	copyN := i / len(g.base)
	env := b
	raw := b.Raw
	if b.ID != "" {
		id := fmt.Sprintf("%s-%d", b.ID, copyN)
		raw = bytes.ReplaceAll(raw, []byte(b.ID), []byte(id))
		env.ID = id
	}
	if b.User != "" && copyN > 0 {
		local, domain, _ := strings.Cut(b.User, "@")
		u := fmt.Sprintf("%s%d@%s", local, copyN%997, domain)
		raw = bytes.ReplaceAll(raw, []byte(b.User), []byte(u))
		env.User = u
	}
	if b.IP != "" && copyN > 0 && !strings.Contains(b.IP, ":") {
		if parts := strings.Split(b.IP, "."); len(parts) == 4 {
			ip := fmt.Sprintf("%s.%s.%d.%d", parts[0], parts[1], (copyN/250)%250, copyN%250+1)
			raw = bytes.ReplaceAll(raw, []byte(b.IP), []byte(ip))
			env.IP = ip
		}
	}
	env.Raw = raw
	return env
}

// Events returns events [0, n).
func (g *Corpus) Events(n int) []event.Envelope {
	out := make([]event.Envelope, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, g.At(i))
	}
	return out
}
