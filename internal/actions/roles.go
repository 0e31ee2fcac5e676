package actions

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
)

// The worker depends on these narrow roles, declared here where they are used;
// the JetStream implementations are adapters (jsDelivery, jetstream.KeyValue).

// Delivery is one request message as the worker sees it: its bytes and
// headers, where it sits in the stream, how often it was delivered, and the
// three ways to settle it. Only the worker's settle step calls Ack, Nak and
// Term.
type Delivery interface {
	Data() []byte
	Header() nats.Header
	Subject() string
	// Sequence is the message's stream sequence (0 when unknown).
	Sequence() uint64
	// Attempts counts deliveries, this one included (at least 1).
	Attempts() int
	// Received is when the stream stored the message (zero when unknown).
	Received() time.Time
	Ack() error
	NakWithDelay(time.Duration) error
	Term() error
	// InProgress extends the server's ack deadline.
	InProgress() error
}

// StateStore is the part of the KV bucket the worker uses: idempotency
// state, blast-radius counters and expiry schedules. jetstream.KeyValue
// satisfies it.
type StateStore interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// UserResolver resolves a mailbox identity in any form Exchange accepts to
// the owner's UPN and object id (graphexec, through Get-Mailbox). An identity
// that names no mailbox is a permanent *Error naming it.
type UserResolver interface {
	ResolveUser(ctx context.Context, identity string) (upn, id string, err error)
}

// PublishFunc sends a request to the ACTIONS stream (signing it, in the engine).
type PublishFunc func(ctx context.Context, r *Request) error

// NotifyFunc tells whoever waits for a request (responder act) its outcome.
// requester is who asked (the verified actor), so the reply goes to them
// only. It must not block; a lost notice is not an error (the audit trail is
// the record).
type NotifyFunc func(requester audit.Actor, o Outcome)

// jsDelivery adapts a JetStream message to Delivery.
type jsDelivery struct {
	jetstream.Msg
	seq      uint64
	attempts int
	received time.Time
}

// FromJetStream adapts a JetStream message to a Delivery.
func FromJetStream(m jetstream.Msg) Delivery {
	d := &jsDelivery{Msg: m, attempts: 1}
	if md, err := m.Metadata(); err == nil {
		d.seq = md.Sequence.Stream
		d.attempts = max(1, int(md.NumDelivered))
		d.received = md.Timestamp
	}
	return d
}

func (d *jsDelivery) Header() nats.Header { return d.Msg.Headers() }
func (d *jsDelivery) Sequence() uint64    { return d.seq }
func (d *jsDelivery) Attempts() int       { return d.attempts }
func (d *jsDelivery) Received() time.Time { return d.received }
