package feeds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxSeen bounds the ids a Graph feed remembers (about 40 bytes each in the
// state bucket, well under NATS's 1 MB message limit). A tenant with more
// records within the re-scan horizon forgets the oldest and re-scans only what
// it still remembers (seenSet.horizon), so a re-scan never re-emits.
const maxSeen = 16000

// seenSet is the set of envelope ids (id and state) a Graph feed has stored,
// each with its record time. Keys are a 64-bit digest of the envelope id.
type seenSet struct {
	cp      *Checkpoint
	persist bool
	loaded  bool
	dirty   bool
	doc     seenDoc
}

type seenDoc struct {
	IDs map[string]int64 `json:"ids"` // digest -> record time (Unix seconds)
	// Floor is set when the oldest ids were forgotten for size: records
	// before it may have been stored and are not re-scanned.
	Floor time.Time `json:"floor,omitzero"`
}

func newSeenSet(kv jetstream.KeyValue, feed string, persist bool) *seenSet {
	return &seenSet{cp: NewCheckpoint(kv, feed, "seen"), persist: persist, doc: seenDoc{IDs: map[string]int64{}}}
}

func seenKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:8])
}

// load reads the kept set once (a restarted poller remembers what it stored).
func (s *seenSet) load(ctx context.Context) error {
	if !s.persist || s.loaded {
		return nil
	}
	var d seenDoc
	found, err := s.cp.Load(ctx, &d)
	if err != nil {
		return err
	}
	if found && d.IDs != nil {
		for k, v := range s.doc.IDs {
			d.IDs[k] = v
		}
		s.doc = d
	}
	s.loaded = true
	return nil
}

func (s *seenSet) has(id string) bool {
	_, ok := s.doc.IDs[seenKey(id)]
	return ok
}

func (s *seenSet) add(id string, at time.Time) {
	s.doc.IDs[seenKey(id)] = at.Unix()
	s.dirty = true
	if len(s.doc.IDs) <= maxSeen {
		return
	}
	// Forget the oldest quarter.
	times := make([]int64, 0, len(s.doc.IDs))
	for _, v := range s.doc.IDs {
		times = append(times, v)
	}
	slices.Sort(times)
	cut := times[len(times)-maxSeen*3/4]
	for k, v := range s.doc.IDs {
		if v < cut {
			delete(s.doc.IDs, k)
		}
	}
	s.doc.Floor = maxTime(s.doc.Floor, time.Unix(cut, 0).UTC())
}

// prune forgets ids of records before keep (no read reaches them any more).
func (s *seenSet) prune(keep time.Time) {
	k := keep.Unix()
	for id, v := range s.doc.IDs {
		if v < k {
			delete(s.doc.IDs, id)
			s.dirty = true
		}
	}
	if !s.doc.Floor.IsZero() && s.doc.Floor.Before(keep) {
		s.doc.Floor, s.dirty = time.Time{}, true
	}
}

// horizon is the oldest record time the set still covers completely (zero:
// everything within the re-scan horizon).
func (s *seenSet) horizon() time.Time { return s.doc.Floor }

// save writes the set when it changed and the feed keeps it.
func (s *seenSet) save(ctx context.Context) error {
	if !s.persist || !s.dirty {
		return nil
	}
	if err := s.cp.Save(ctx, s.doc); err != nil {
		return err
	}
	s.dirty = false
	return nil
}
