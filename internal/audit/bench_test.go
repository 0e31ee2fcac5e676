package audit

import (
	"context"
	"testing"
)

// BenchmarkAppendSigning measures one writer's appends over the embedded NATS server:
// unsigned, signed with an engine key, and signed with the head kept (file and
// KV) as the engine runs it. The difference is what signing costs a record.
func BenchmarkAppendSigning(b *testing.B) {
	for _, mode := range []string{"unsigned", "signed", "signed+head"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			bb := openBus(b)
			opts := WriterOptions{Logger: quiet}
			if mode != "unsigned" {
				opts.Signer = newKey(b)
			}
			if mode == "signed+head" {
				kv, err := bb.State(ctx)
				if err != nil {
					b.Fatal(err)
				}
				opts.Head = NewHeadKeeper(HeadKeeperConfig{Path: HeadPath(b.TempDir()), KV: kv, Signer: opts.Signer, Logger: quiet})
				done := make(chan struct{})
				go func() { defer close(done); _ = opts.Head.Run(ctx) }()
				defer func() { cancel(); <-done }()
			}
			w := NewWriter(bb.JS, opts)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := w.Append(ctx, sample(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignRecord is the CPU cost of signing alone (as the Writer signs).
func BenchmarkSignRecord(b *testing.B) {
	kp := fastSigner(newKey(b))
	r := sample(1)
	r.Hash = "3d0895bcdf4a7e36999484a34fc7e97749cfe7ca83f33793b255a3a3704f72e3"
	for b.Loop() {
		if err := signRecord(kp, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendConcurrent is the engine's shape: many workers appending
// signed records through one writer at once (the worker pool settling
// requests), so appends queue behind the one holding the chain.
func BenchmarkAppendConcurrent(b *testing.B) {
	ctx := context.Background()
	bb := openBus(b)
	w := NewWriter(bb.JS, WriterOptions{Logger: quiet, Signer: newKey(b)})
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := w.Append(ctx, sample(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
