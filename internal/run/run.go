// Package run owns the one way Responder runs several long-running parts
// together: a Group starts each part in its own goroutine, stops them all when
// its context ends or when one part fails, and waits for every one of them
// before it returns. No goroutine outlives Run.
package run

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Group is a set of named parts, each a func(ctx) error that runs until ctx
// ends. The zero value is ready; add every part before Run.
type Group struct {
	names []string
	fns   []func(context.Context) error
}

// Add adds a part. name prefixes its error ("" = none).
func (g *Group) Add(name string, fn func(context.Context) error) {
	g.names = append(g.names, name)
	g.fns = append(g.fns, fn)
}

// Len is the number of parts added.
func (g *Group) Len() int { return len(g.fns) }

// Run starts every part and blocks until all have returned. The first part
// that fails cancels the context of the others. It returns the failures,
// joined, each named; a part that returns nil, or that returns a context
// error after the group was stopped, did not fail. With no parts Run returns
// at once.
func (g *Group) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, fn := range g.fns {
		name := g.names[i]
		wg.Go(func() {
			err := fn(ctx)
			if err == nil || (ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))) {
				return
			}
			if name != "" {
				err = fmt.Errorf("%s: %w", name, err)
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
