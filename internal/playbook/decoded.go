package playbook

import (
	"context"
	"errors"

	"github.com/responder-sec/responder/internal/event"
)

// Decoded is an event whose raw record has been decoded in full ahead of
// matching: Set.MatchDecoded then matches it without decoding anything. It
// is the seam that lets matching be measured apart from decoding
// (`responder bench match`); Set.Match and MatchStateful decode lazily and
// are what the engine calls. A Decoded is not safe for concurrent use; reuse
// it for event after event to keep its buffers.
type Decoded struct {
	c evalCtx
}

// Decode fills d with env (which must stay unchanged while d is in use):
// its raw record scanned, and the slots of the fields that the rules and
// indexes of the event's source read (the compiled program's fields)
// filled: each field's leaves with their lower-cased text and numbers. What
// else matching reads (a playbook's own conditions, a step's template) is
// decoded when it is read, as Match does. A record whose members read are
// not JSON is left to be decoded as matching reads it, so that MatchDecoded
// reports exactly what Match reports.
func (s *Set) Decode(env *event.Envelope, d *Decoded) {
	d.c.reset(s, env)
	d.c.scan()
	if d.c.rawErr == nil {
		d.c.prepare()
	}
	if d.c.rawErr != nil {
		d.c.reset(s, env)
	}
}

// Release drops what d holds of its last event, keeping the buffers.
func (d *Decoded) Release() { d.c.reset(nil, nil) }

// MatchDecoded is MatchStateful on an event that Decode filled for this set;
// with a nil counter it is Match (threshold playbooks do not fire).
func (s *Set) MatchDecoded(ctx context.Context, d *Decoded, counter Counter) ([]Match, error) {
	if d == nil || d.c.env == nil || d.c.set != s {
		return nil, errNotDecoded
	}
	return s.matchCtx(ctx, &d.c, counter)
}

var errNotDecoded = errors.New("playbook: the event was not decoded for this set")

// HitsDecoded is the first half of MatchDecoded: it appends to buf the
// playbooks that fire on the event (the threshold ones observed by the
// counter) and returns it with the errors MatchDecoded returns, without
// building their Matches. RenderDecoded builds them, on the same Decoded
// (before it is released or reused): HitsDecoded then RenderDecoded is
// MatchDecoded.
func (s *Set) HitsDecoded(ctx context.Context, d *Decoded, counter Counter, buf []Hit) ([]Hit, error) {
	if d == nil || d.c.env == nil || d.c.set != s {
		return buf, errNotDecoded
	}
	return s.hitsCtx(ctx, &d.c, counter, buf)
}

// RenderDecoded builds the Matches of hits that HitsDecoded returned for d.
func (s *Set) RenderDecoded(d *Decoded, hits []Hit) ([]Match, error) {
	if d == nil || d.c.env == nil || d.c.set != s {
		return nil, errNotDecoded
	}
	return s.render(&d.c, hits)
}
