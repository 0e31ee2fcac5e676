package bus

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// lossyIter is a message iterator whose pulls lose their heartbeat (the
// nats.go iterator itself is not ours: a double stands in for it).
type lossyIter struct {
	jetstream.MessagesContext
	errs []error // returned in turn; then a message
	msg  jetstream.Msg
}

func (l *lossyIter) Next(...jetstream.NextOpt) (jetstream.Msg, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.msg, nil
}

func TestPullerRetriesLostHeartbeatsUpToTheCap(t *testing.T) {
	lost := func(n int) []error {
		out := make([]error, n)
		for i := range out {
			out[i] = jetstream.ErrNoHeartbeat
		}
		return out
	}
	quiet := slog.New(slog.DiscardHandler)
	// Up to the cap in a row: the message comes through.
	it := &lossyIter{errs: lost(MaxLostHeartbeats)}
	p := NewPuller(it, quiet, "t")
	if _, err := p.Next(); err != nil {
		t.Fatalf("after %d lost heartbeats: %v, want the next message", MaxLostHeartbeats, err)
	}
	// The count starts again after a message.
	it.errs = lost(MaxLostHeartbeats)
	if _, err := p.Next(); err != nil {
		t.Fatalf("a second run of losses: %v", err)
	}
	// One more than the cap: the error is returned.
	it.errs = lost(MaxLostHeartbeats + 1)
	if _, err := p.Next(); !errors.Is(err, jetstream.ErrNoHeartbeat) {
		t.Fatalf("after %d lost heartbeats: %v, want ErrNoHeartbeat", MaxLostHeartbeats+1, err)
	}
	// Any other error is returned at once.
	boom := errors.New("boom")
	it.errs = []error{boom}
	if _, err := NewPuller(it, quiet, "t").Next(); !errors.Is(err, boom) {
		t.Fatalf("other error: %v", err)
	}
}
