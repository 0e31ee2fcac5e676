package bus

import (
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxLostHeartbeats is how many pulls in a row may lose their heartbeat
// before Puller gives up (each loss takes the iterator's heartbeat interval,
// 30 s by default).
const MaxLostHeartbeats = 5

// Puller reads a consumer's message iterator. A pull whose heartbeat is lost
// (its request went with a server that stopped, or a consumer leader moved)
// is asked again, up to MaxLostHeartbeats in a row; past that the error is
// returned so that the process fails visibly instead of idling.
type Puller struct {
	it   jetstream.MessagesContext
	log  *slog.Logger
	name string
	lost int
}

// NewPuller reads it; name says which consumer in the warnings.
func NewPuller(it jetstream.MessagesContext, log *slog.Logger, name string) *Puller {
	return &Puller{it: it, log: log, name: name}
}

// Next returns the next message, or the iterator's error.
func (p *Puller) Next() (jetstream.Msg, error) {
	for {
		msg, err := p.it.Next()
		if err == nil {
			p.lost = 0
			return msg, nil
		}
		if !errors.Is(err, jetstream.ErrNoHeartbeat) || p.lost >= MaxLostHeartbeats {
			return nil, err
		}
		p.lost++
		p.log.Warn("no heartbeat from the consumer; pulling again", "consumer", p.name, "in_a_row", p.lost, "err", err)
	}
}
