package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Transient reports an error after which a publish may or may not have been
// stored (no acknowledgement in time), or that says the stream has no leader
// at the moment (while a cluster elects one after a server is lost, a publish
// finds no responder). Publishing the same message again with the same
// Nats-Msg-Id is safe: the stream stores it once within its duplicate window.
func Transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}

// FailoverWindow is how long PublishOnce keeps re-sending by default: a
// JetStream cluster elects a new stream leader within a few seconds of losing
// one (the Raft election timeout is 4 to 9 s in nats-server 2.10 and later);
// twice that covers a slow election on a loaded machine.
const FailoverWindow = 20 * time.Second

// publishAttemptTimeout bounds one attempt, so that a publish whose
// acknowledgement went with a stopped server is sent again while the window
// lasts rather than waiting out the caller's whole context.
const publishAttemptTimeout = 5 * time.Second

// PublishOnce publishes m deduplicated by id and, on a transient error, sends
// it again (with jittered backoff from 100 ms up to 2 s) until the stream
// acknowledges it, ctx ends or window (FailoverWindow when 0) has passed. The
// duplicate window makes the repeats harmless: the stream stores the message
// once, and a repeat of a stored one is acknowledged as a duplicate. Any other
// error is returned at once. The error of the last attempt is wrapped.
func PublishOnce(ctx context.Context, js jetstream.Publisher, m *nats.Msg, id string, window time.Duration, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if window <= 0 {
		window = FailoverWindow
	}
	deadline := time.Now().Add(window)
	opts = append([]jetstream.PublishOpt{jetstream.WithMsgID(id)}, opts...)
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
		ack, err := js.PublishMsg(actx, m, opts...)
		cancel()
		if err == nil {
			return ack, nil
		}
		if !Transient(err) || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			if attempt > 1 {
				return nil, fmt.Errorf("%w (%d attempts)", err, attempt)
			}
			return nil, err
		}
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (%d attempts)", err, attempt)
		case <-t.C:
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// errCodeClusterNotAvailable is nats-server's JSClusterNotAvailErr, "JetStream
// system temporarily unavailable" (10008): the meta group has no leader yet
// (a cluster forming, or electing after losing one).
const errCodeClusterNotAvailable = 10008

// Unavailable reports a JetStream API error that passes by itself: Transient,
// or the cluster's meta group without a leader for the moment.
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	return Transient(err) || errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNotAvailable
}
