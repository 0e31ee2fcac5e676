package run

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// TestFailureStopsTheOthers: one failing part cancels the rest, Run waits for
// every part and names the failure; the others' context errors are not
// failures.
func TestFailureStopsTheOthers(t *testing.T) {
	var g Group
	boom := errors.New("boom")
	var stopped atomic.Int32
	for range 3 {
		g.Add("waiter", func(ctx context.Context) error {
			<-ctx.Done()
			stopped.Add(1)
			return ctx.Err()
		})
	}
	g.Add("feeds", func(context.Context) error { return boom })
	err := g.Run(context.Background())
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "feeds: ") {
		t.Fatalf("err = %v, want the named failure", err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("the stopped parts were reported as failures: %v", err)
	}
	if n := stopped.Load(); n != 3 {
		t.Errorf("%d of 3 parts stopped before Run returned", n)
	}
}

// TestContextEndIsNotAFailure: when the caller's context ends every part
// stops and Run returns nil.
func TestContextEndIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var g Group
	started := make(chan struct{}, 2)
	for range 2 {
		g.Add("p", func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-started
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
}

// TestEveryFailureIsKept: parts failing together are all reported.
func TestEveryFailureIsKept(t *testing.T) {
	var g Group
	release := make(chan struct{})
	a, b := errors.New("a"), errors.New("b")
	g.Add("x", func(context.Context) error { <-release; return a })
	g.Add("y", func(context.Context) error { <-release; return b })
	close(release)
	err := g.Run(context.Background())
	// Both fail before either sees the other's cancel, or one sees it and
	// still returns its own (non-context) error: both are failures.
	if !errors.Is(err, a) || !errors.Is(err, b) {
		t.Fatalf("err = %v, want both", err)
	}
	if g.Len() != 2 {
		t.Errorf("Len = %d", g.Len())
	}
	var empty Group
	if err := empty.Run(context.Background()); err != nil {
		t.Errorf("empty group: %v", err)
	}
}
