package graphexec

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/responder-sec/responder/internal/budget"
)

// Rate is N requests (or resource units) per Per, with a burst of N.
type Rate = budget.Rate

// BudgetConfig are Microsoft's per-service throttling budgets as the engine
// paces itself (Microsoft Learn, "Microsoft Graph service-specific throttling
// limits"; see shared/ms365-api-notes.md §5.2).
type BudgetConfig struct {
	// EntraWrites: 3,000 writes per 2 min 30 s per app and tenant.
	EntraWrites Rate
	// EntraUnits: 3,500 resource units per 10 s per app and tenant (the
	// smallest tenant size; larger tenants get more).
	EntraUnits Rate
	// OutlookConcurrency: 4 concurrent requests per app and mailbox.
	OutlookConcurrency int
	// IdentityProtectionCA: 1 request per second per tenant for Identity
	// Protection and Conditional Access (429 without Retry-After past it).
	IdentityProtectionCA Rate
	// SharedIdentityProtectionCA, when set, replaces the IdentityProtectionCA
	// bucket with a limiter shared with the feeds (whose polls yield to actions):
	// Microsoft's 1 request per second is per tenant, for every caller.
	SharedIdentityProtectionCA func(ctx context.Context) error
}

// DefaultBudgetConfig returns Microsoft's published budgets.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{
		EntraWrites:          Rate{N: 3000, Per: 150 * time.Second},
		EntraUnits:           Rate{N: 3500, Per: 10 * time.Second},
		OutlookConcurrency:   4,
		IdentityProtectionCA: Rate{N: 1, Per: time.Second},
	}
}

// Budgets is one throttling budget per Microsoft service, shared by every
// worker of a process: build one per process and pass it to every Executor.
// It is safe for concurrent use and owns no goroutine.
type Budgets struct {
	entraWrites, entraUnits, idpCA *budget.Bucket
	sharedIDPCA                    func(ctx context.Context) error
	outlookMax                     int

	mu        sync.Mutex
	mailboxes map[string]*mailboxSem
}

// NewBudgets builds the budgets (zero fields take the defaults).
func NewBudgets(c BudgetConfig) *Budgets {
	d := DefaultBudgetConfig()
	if c.EntraWrites.N <= 0 || c.EntraWrites.Per <= 0 {
		c.EntraWrites = d.EntraWrites
	}
	if c.EntraUnits.N <= 0 || c.EntraUnits.Per <= 0 {
		c.EntraUnits = d.EntraUnits
	}
	if c.OutlookConcurrency <= 0 {
		c.OutlookConcurrency = d.OutlookConcurrency
	}
	if c.IdentityProtectionCA.N <= 0 || c.IdentityProtectionCA.Per <= 0 {
		c.IdentityProtectionCA = d.IdentityProtectionCA
	}
	return &Budgets{
		// Paced 2% under the write budget: requests that leave together
		// in one $batch reach Graph together, and a client exactly at the
		// limit sees the odd 429 (each one costs a Retry-After of seconds).
		entraWrites: budget.New(c.EntraWrites, 0.02), entraUnits: budget.New(c.EntraUnits, 0),
		// One request per second leaves no room for network jitter: a request
		// delayed on the way makes the next one arrive early. Pace 5% slower.
		idpCA:       budget.New(c.IdentityProtectionCA, 0.05),
		sharedIDPCA: c.SharedIdentityProtectionCA,
		outlookMax:  c.OutlookConcurrency, mailboxes: map[string]*mailboxSem{},
	}
}

// Entra waits for units resource units and writes writes.
func (b *Budgets) Entra(ctx context.Context, units, writes float64) error {
	if writes > 0 {
		if err := b.entraWrites.WaitN(ctx, writes); err != nil {
			return err
		}
	}
	if units > 0 {
		return b.entraUnits.WaitN(ctx, units)
	}
	return nil
}

// IdentityProtectionCA waits for one Identity Protection / Conditional Access request.
func (b *Budgets) IdentityProtectionCA(ctx context.Context) error {
	if b.sharedIDPCA != nil {
		return b.sharedIDPCA(ctx)
	}
	return b.idpCA.WaitN(ctx, 1)
}

type mailboxSem struct {
	ch    chan struct{}
	users int
}

// Mailbox takes one of the mailbox's concurrent-request slots; release gives it back.
func (b *Budgets) Mailbox(ctx context.Context, mailbox string) (release func(), err error) {
	key := strings.ToLower(mailbox)
	b.mu.Lock()
	s := b.mailboxes[key]
	if s == nil {
		s = &mailboxSem{ch: make(chan struct{}, b.outlookMax)}
		b.mailboxes[key] = s
	}
	s.users++
	b.mu.Unlock()
	done := func() {
		b.mu.Lock()
		s.users--
		if s.users == 0 {
			delete(b.mailboxes, key)
		}
		b.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
