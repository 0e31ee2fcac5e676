package audit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/bus/bustest"
)

// Two writers (two engines) append to one chain on an R3 stream at once,
// each with many appends queued (so that each would publish them pipelined).
// Every append succeeds, the stream keeps accepting writes, no server logs a
// critical write error, and the chain verifies. Before the writer published
// one record at a time on replicated streams, a pipelined batch could carry a
// Nats-Expected-Last-Msg-Id that the leader checks only when applying the
// committed entry; the mismatch stopped AUDIT on every replica.
func TestTwoWritersOnAReplicatedStream(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS servers")
	}
	cl := bustest.Start(t, t.Context(), 3, "audit-test")
	urls, logs := cl.ClientURLs(), cl.Logs()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URL: urls, Replicas: 3, Name: "audit-cluster-test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	const perWriter, concurrent = 400, 32
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWriter)
	for wi := range 2 {
		nc, err := nats.Connect(urls, nats.Name(fmt.Sprintf("writer-%d", wi)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(js, WriterOptions{Logger: quiet, AckWait: 5 * time.Second, MaxAttempts: 200})
		next := make(chan int)
		for range concurrent {
			wg.Go(func() {
				for i := range next {
					r := Record{ID: fmt.Sprintf("w%d-%04d", wi, i), TenantID: "t1", Action: "disable_user",
						Outcome: Succeeded, Actor: Actor{Kind: "engine", Name: fmt.Sprintf("engine-%d", wi)}}
					if _, err := w.Append(ctx, r); err != nil {
						errs <- fmt.Errorf("writer %d record %d: %w", wi, i, err)
					}
				}
			})
		}
		wg.Go(func() {
			defer close(next)
			for i := range perWriter {
				next <- i
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil && strings.Contains(string(data), "critical write error") {
			t.Errorf("%s logged a critical write error:\n%s", l, data)
		}
	}
	s, err := b.JS.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*perWriter {
		t.Fatalf("AUDIT holds %d records, want %d", info.State.Msgs, 2*perWriter)
	}
	var buf strings.Builder
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(m.Data)
		buf.WriteByte('\n')
	}
	if res, err := VerifyReader(strings.NewReader(buf.String())); err != nil || !res.OK || res.Records != 2*perWriter {
		t.Fatalf("the chain does not verify: %+v, %v", res, err)
	}
}
