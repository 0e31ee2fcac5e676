package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

var quiet = slog.New(slog.DiscardHandler)

// openBus starts an embedded NATS server with every stream, closed at cleanup.
func openBus(t testing.TB) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Port: -1, Logger: quiet})
	if err != nil {
		t.Fatalf("bus.Open: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// connect opens a second, independent client connection to b's server.
func connect(t *testing.T, b *bus.Bus) jetstream.JetStream {
	t.Helper()
	nc, err := b.Connect(nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// testCtx bounds a test so that a hang fails it instead of the whole run.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fixedClock returns a clock that advances one second per call from a fixed start.
func fixedClock() func() time.Time {
	var mu sync.Mutex
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		at = at.Add(time.Second)
		return at
	}
}

// sample is a plausible record number i.
func sample(i int) Record {
	return Record{
		TenantID:  "contoso",
		RequestID: fmt.Sprintf("req-%d", i/2),
		Action:    "disable_user",
		Target:    map[string]string{"user": fmt.Sprintf("user%d@contoso.com", i)},
		Actor:     Actor{Kind: "playbook", Name: "forwarding-rule"},
		Outcome:   Succeeded,
		Detail:    fmt.Sprintf("record %d", i),
		Attempts:  1,
	}
}

// appendN appends n sample records with w and returns them as stored.
func appendN(t *testing.T, ctx context.Context, w *Writer, n int) []Record {
	t.Helper()
	out := make([]Record, 0, n)
	for i := range n {
		r, err := w.Append(ctx, sample(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

// all lists every record of the stream.
func all(t *testing.T, ctx context.Context, js jetstream.JetStream) []Record {
	t.Helper()
	var out []Record
	if err := List(ctx, js, Filter{}, func(r Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

// exportLines exports the whole stream as JSONL and splits it into lines.
func exportLines(t *testing.T, ctx context.Context, js jetstream.JetStream, f Filter) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(ctx, js, f, FormatJSONL, &buf); err != nil {
		t.Fatalf("Export: %v", err)
	}
	s := strings.TrimSuffix(buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// countingJS counts publishes and can lose the ack of chosen ones (the message is
// stored but the caller sees a timeout, as when the ack is lost on the way back) or
// drop chosen ones (nothing stored, a timeout).
type countingJS struct {
	jetstream.JetStream
	mu        sync.Mutex
	publishes int
	loseAck   map[int]bool // publish number (1-based) -> store it, then report a timeout
	drop      map[int]bool // publish number (1-based) -> do not store it, report a timeout
	afterLoss func()       // runs after a lost ack, before Append sees the error
}

func (c *countingJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	c.mu.Lock()
	c.publishes++
	n := c.publishes
	lose, drop := c.loseAck[n], c.drop[n]
	c.mu.Unlock()
	if drop {
		return nil, fmt.Errorf("nats: timeout: %w", context.DeadlineExceeded)
	}
	ack, err := c.JetStream.PublishMsg(ctx, m, opts...)
	if err != nil || !lose {
		return ack, err
	}
	if c.afterLoss != nil {
		c.afterLoss()
	}
	return nil, fmt.Errorf("nats: timeout waiting for ack: %w", context.DeadlineExceeded)
}

// PublishMsgAsync publishes through PublishMsg, in order, and returns its
// outcome as an already resolved future, so the faults above apply to the
// writer's pipelined publishes too.
func (c *countingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f := &doneFuture{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	ack, err := c.PublishMsg(context.Background(), m, opts...)
	if err != nil {
		f.err <- err
	} else {
		f.ok <- ack
	}
	return f, nil
}

type doneFuture struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *doneFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *doneFuture) Err() <-chan error            { return f.err }
func (f *doneFuture) Msg() *nats.Msg               { return f.msg }

func (c *countingJS) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.publishes
}
