package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultCallTimeout bounds one JetStream request made through a Bus (a
// publish, a KV read or write, a stream lookup) whatever the caller's deadline.
//
// A request whose reply is lost never gets one: in a cluster that happens to
// every request in flight through a server that stops, or to a stream leader
// that stops. Without a bound such a call waits for the caller's whole
// deadline (an action worker's is minutes, during which the request is held
// from every other worker); with it, the call fails after this long and the
// caller retries on the servers that remain. Healthy requests take
// milliseconds.
const DefaultCallTimeout = 10 * time.Second

// Bounded returns js with every request-reply call bounded by d (d <= 0:
// js unchanged). Streams and key-value buckets it returns are bounded too.
// Long-lived calls (watchers, consumers' message streams, listers) keep the
// caller's context.
func Bounded(js jetstream.JetStream, d time.Duration) jetstream.JetStream {
	if d <= 0 {
		return js
	}
	return &boundedJS{JetStream: js, d: d}
}

// BoundedKV returns kv with every request-reply call bounded by d.
func BoundedKV(kv jetstream.KeyValue, d time.Duration) jetstream.KeyValue {
	if d <= 0 || kv == nil {
		return kv
	}
	if b, ok := kv.(*boundedKV); ok && b.d <= d {
		return kv
	}
	return &boundedKV{KeyValue: kv, d: d}
}

// bound returns ctx limited to d from now, unless it ends sooner already.
func bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

type boundedJS struct {
	jetstream.JetStream
	d time.Duration
}

func (b *boundedJS) Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	return b.JetStream.Publish(ctx, subject, payload, opts...)
}

func (b *boundedJS) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	return b.JetStream.PublishMsg(ctx, msg, opts...)
}

func (b *boundedJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	s, err := b.JetStream.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return &boundedStream{Stream: s, d: b.d}, nil
}

func (b *boundedJS) StreamNameBySubject(ctx context.Context, subject string) (string, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	return b.JetStream.StreamNameBySubject(ctx, subject)
}

func (b *boundedJS) Consumer(ctx context.Context, stream, consumer string) (jetstream.Consumer, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	return b.JetStream.Consumer(ctx, stream, consumer)
}

func (b *boundedJS) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	return b.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
}

func (b *boundedJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	kv, err := b.JetStream.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return BoundedKV(kv, b.d), nil
}

func (b *boundedJS) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	kv, err := b.JetStream.CreateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return BoundedKV(kv, b.d), nil
}

func (b *boundedJS) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	kv, err := b.JetStream.UpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return BoundedKV(kv, b.d), nil
}

func (b *boundedJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := bound(ctx, b.d)
	defer cancel()
	kv, err := b.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return BoundedKV(kv, b.d), nil
}

type boundedStream struct {
	jetstream.Stream
	d time.Duration
}

func (s *boundedStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	ctx, cancel := bound(ctx, s.d)
	defer cancel()
	return s.Stream.Info(ctx, opts...)
}

func (s *boundedStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := bound(ctx, s.d)
	defer cancel()
	return s.Stream.GetMsg(ctx, seq, opts...)
}

func (s *boundedStream) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := bound(ctx, s.d)
	defer cancel()
	return s.Stream.GetLastMsgForSubject(ctx, subject)
}

func (s *boundedStream) Consumer(ctx context.Context, consumer string) (jetstream.Consumer, error) {
	ctx, cancel := bound(ctx, s.d)
	defer cancel()
	return s.Stream.Consumer(ctx, consumer)
}

func (s *boundedStream) CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	ctx, cancel := bound(ctx, s.d)
	defer cancel()
	return s.Stream.CreateOrUpdateConsumer(ctx, cfg)
}

type boundedKV struct {
	jetstream.KeyValue
	d time.Duration
}

func (k *boundedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Get(ctx, key)
}

func (k *boundedKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.GetRevision(ctx, key, revision)
}

func (k *boundedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Put(ctx, key, value)
}

func (k *boundedKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.PutString(ctx, key, value)
}

func (k *boundedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k *boundedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Update(ctx, key, value, revision)
}

func (k *boundedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Delete(ctx, key, opts...)
}

func (k *boundedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Purge(ctx, key, opts...)
}

func (k *boundedKV) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	ctx, cancel := bound(ctx, k.d)
	defer cancel()
	return k.KeyValue.Status(ctx)
}
