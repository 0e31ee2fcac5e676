package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// State is where a pending request stands.
type State string

// The states. Pending → Approved → Released, or Pending → Denied | Expired.
const (
	StatePending  State = "pending"
	StateApproved State = "approved"
	StateReleased State = "released"
	StateDenied   State = "denied"
	StateExpired  State = "expired"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound    = errors.New("approval: no such pending request")
	ErrExists      = errors.New("approval: request is already waiting")
	ErrNotPending  = errors.New("approval: request is no longer pending")
	ErrExpired     = errors.New("approval: request expired")
	ErrOwnRequest  = errors.New("approval: the requester cannot approve their own request")
	ErrNotApprover = errors.New("approval: not allowed to approve")
	ErrAlreadyVote = errors.New("approval: already approved by this analyst")
	ErrMismatch    = errors.New("approval: message is not the approved request")
	ErrContention  = errors.New("approval: gave up after repeated concurrent updates")
)

// Vote is one approver's decision.
type Vote struct {
	Name  string `json:"name"`
	KeyID string `json:"key_id,omitempty"`
	// EntraOID is the object id of a person who voted through the console
	// (KeyID is then the console's key, shared by everyone signed in).
	EntraOID string    `json:"entra_oid,omitempty"`
	At       time.Time `json:"at"`
	// Command and Header are the approver's signed command exactly as
	// received: the evidence the engine re-verifies when it releases the
	// request (a vote without it counts for nothing).
	Command []byte              `json:"command,omitempty"`
	Header  map[string][]string `json:"header,omitempty"`
}

// Pending is one request waiting for (or past) approval.
type Pending struct {
	RequestID string            `json:"request_id"`
	Action    string            `json:"action"`
	Target    map[string]string `json:"target,omitempty"`
	Requester audit.Actor       `json:"requester"`
	Reason    string            `json:"reason,omitempty"`   // the requester's
	EventID   string            `json:"event_id,omitempty"` // the event that triggered it (playbooks)
	Why       []string          `json:"why"`                // why approval is needed
	Required  int               `json:"required"`
	Approvals []Vote            `json:"approvals,omitempty"`
	State     State             `json:"state"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
	DecidedAt time.Time         `json:"decided_at,omitzero"`
	DeniedBy  *Vote             `json:"denied_by,omitempty"`
	Denial    string            `json:"denial,omitempty"`
	// Announced: the expiry has been audited.
	Announced bool `json:"announced,omitempty"`
	// ReleasedSeq is the stream sequence of the released message.
	ReleasedSeq uint64 `json:"released_seq,omitempty"`
	// Message and Header are the request exactly as received (signed body and
	// signature headers), re-published on release.
	Message []byte              `json:"message"`
	Header  map[string][]string `json:"header,omitempty"`
}

// Digest identifies the held message.
func (p Pending) Digest() string {
	sum := sha256.Sum256(p.Message)
	return hex.EncodeToString(sum[:])
}

// Summary is p without the held message and the votes' evidence, for
// listings.
func (p Pending) Summary() Pending {
	p.Message, p.Header = nil, nil
	if p.Approvals != nil {
		votes := make([]Vote, len(p.Approvals))
		for i, v := range p.Approvals {
			v.Command, v.Header = nil, nil
			votes[i] = v
		}
		p.Approvals = votes
	}
	return p
}

// Decision is the result of one approval.
type Decision struct {
	Pending Pending
	// Complete: this approval was the last one needed; release the request.
	Complete bool
}

// StoreOptions configure a Store.
type StoreOptions struct {
	Now func() time.Time
	// MaxAttempts bounds compare-and-set retries of one update (default 32).
	MaxAttempts int
}

// Store keeps pending approvals in a KV bucket (bus.BucketState), one key per
// request: approval.<request id>. Safe for concurrent use by any number of
// processes.
type Store struct {
	kv          jetstream.KeyValue
	now         func() time.Time
	maxAttempts int
}

// NewStore returns a Store on kv.
func NewStore(kv jetstream.KeyValue, opts StoreOptions) *Store {
	s := &Store{kv: kv, now: opts.Now, maxAttempts: opts.MaxAttempts}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 32
	}
	return s
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)

func key(id string) (string, error) {
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("%w: %q is not a request id", ErrNotFound, id)
	}
	return bus.ApprovalKey(id), nil
}

// Submit stores p as pending. CreatedAt defaults to now, ExpiresAt to
// CreatedAt+DefaultTTL, Required to 1. Submitting the same request again
// (a redelivery) returns ErrExists and changes nothing.
func (s *Store) Submit(ctx context.Context, p Pending) error {
	k, err := key(p.RequestID)
	if err != nil {
		return err
	}
	p.State = StatePending
	if p.CreatedAt.IsZero() {
		p.CreatedAt = s.now().UTC()
	}
	if p.ExpiresAt.IsZero() {
		p.ExpiresAt = p.CreatedAt.Add(DefaultTTL)
	}
	p.Required = min(max(p.Required, 1), 2)
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("approval: encode %s: %w", p.RequestID, err)
	}
	if _, err := s.kv.Create(ctx, k, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s", ErrExists, p.RequestID)
		}
		return fmt.Errorf("approval: submit %s: %w", p.RequestID, err)
	}
	return nil
}

// Get returns one entry.
func (s *Store) Get(ctx context.Context, id string) (Pending, error) {
	p, _, err := s.get(ctx, id)
	return p, err
}

func (s *Store) get(ctx context.Context, id string) (Pending, uint64, error) {
	k, err := key(id)
	if err != nil {
		return Pending{}, 0, err
	}
	e, err := s.kv.Get(ctx, k)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Pending{}, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return Pending{}, 0, fmt.Errorf("approval: get %s: %w", id, err)
	}
	var p Pending
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Pending{}, 0, fmt.Errorf("approval: entry %s is corrupt: %w", id, err)
	}
	return p, e.Revision(), nil
}

// update applies fn to the current entry and stores the result with a
// compare-and-set, retrying when another process changed the entry meanwhile.
// fn's error stops the update and is returned with the entry as read.
func (s *Store) update(ctx context.Context, id string, fn func(*Pending) error) (Pending, error) {
	k, err := key(id)
	if err != nil {
		return Pending{}, err
	}
	for range s.maxAttempts {
		p, rev, err := s.get(ctx, id)
		if err != nil {
			return Pending{}, err
		}
		if err := fn(&p); err != nil {
			return p, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return Pending{}, fmt.Errorf("approval: encode %s: %w", id, err)
		}
		if _, err := s.kv.Update(ctx, k, b, rev); err != nil {
			if wrongRevision(err) {
				continue
			}
			return Pending{}, fmt.Errorf("approval: update %s: %w", id, err)
		}
		return p, nil
	}
	return Pending{}, fmt.Errorf("%w: %s", ErrContention, id)
}

func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// isRequester reports whether a is the requester of p (same name, or same
// identity: the Entra object id of a person signed in to the console, else
// the key).
func isRequester(p Pending, a analyst.Analyst) bool {
	return analyst.SamePerson(a, p.Requester)
}

// sameVoter reports whether v was cast by a.
func sameVoter(v Vote, a analyst.Analyst) bool {
	return analyst.SamePerson(a, audit.Actor{Name: v.Name, KeyID: v.KeyID, EntraOID: v.EntraOID})
}

// Approve records by's approval. It refuses the requester, analysts who may not
// approve, a second vote by the same analyst, and requests that are no longer
// pending or past their expiry. Complete reports that the last approval needed
// has been given; the state is then approved.
func (s *Store) Approve(ctx context.Context, id string, by analyst.Analyst) (Decision, error) {
	return s.ApproveSigned(ctx, id, by, nil, nil)
}

// ApproveSigned is Approve keeping the approver's signed command as the
// vote's evidence.
func (s *Store) ApproveSigned(ctx context.Context, id string, by analyst.Analyst, command []byte, header map[string][]string) (Decision, error) {
	if !by.MayApprove || by.Role == analyst.RoleEngine {
		return Decision{}, fmt.Errorf("%w: %s", ErrNotApprover, by.Name)
	}
	now := s.now().UTC()
	var complete bool
	p, err := s.update(ctx, id, func(p *Pending) error {
		complete = false
		switch {
		case p.State != StatePending:
			return fmt.Errorf("%w: %s is %s", ErrNotPending, id, p.State)
		case !now.Before(p.ExpiresAt):
			return fmt.Errorf("%w: %s expired at %s", ErrExpired, id, p.ExpiresAt.Format(time.RFC3339))
		case isRequester(*p, by):
			return fmt.Errorf("%w: %s requested %s", ErrOwnRequest, by.Name, id)
		case slices.ContainsFunc(p.Approvals, func(v Vote) bool { return sameVoter(v, by) }):
			return fmt.Errorf("%w: %s", ErrAlreadyVote, by.Name)
		}
		p.Approvals = append(p.Approvals, Vote{Name: by.Name, KeyID: by.PublicKey, EntraOID: by.EntraOID, At: now, Command: command, Header: header})
		if len(p.Approvals) >= p.Required {
			p.State, p.DecidedAt, complete = StateApproved, now, true
		}
		return nil
	})
	if err != nil {
		return Decision{Pending: p}, err
	}
	return Decision{Pending: p, Complete: complete}, nil
}

// Deny ends a pending request. An approver may deny; so may the requester
// (withdrawing it). A reason is required.
func (s *Store) Deny(ctx context.Context, id string, by analyst.Analyst, reason string) (Pending, error) {
	if strings.TrimSpace(reason) == "" {
		return Pending{}, errors.New("approval: a denial needs a reason")
	}
	now := s.now().UTC()
	return s.update(ctx, id, func(p *Pending) error {
		switch {
		case p.State != StatePending:
			return fmt.Errorf("%w: %s is %s", ErrNotPending, id, p.State)
		case !by.MayApprove && !isRequester(*p, by):
			return fmt.Errorf("%w: %s", ErrNotApprover, by.Name)
		}
		p.State, p.DecidedAt = StateDenied, now
		p.DeniedBy = &Vote{Name: by.Name, KeyID: by.PublicKey, EntraOID: by.EntraOID, At: now}
		p.Denial = reason
		return nil
	})
}

// Release marks an approved request as handed to the action workers: the worker
// calls it when the re-published request (header HeaderApproval) arrives, with
// the message body and its stream sequence. It succeeds once per approval, and
// again for redeliveries of the same stored message; anything else (not
// approved, another body, another copy) is refused.
func (s *Store) Release(ctx context.Context, id string, body []byte, seq uint64) (Pending, error) {
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	return s.update(ctx, id, func(p *Pending) error {
		if p.Digest() != digest {
			return fmt.Errorf("%w: %s", ErrMismatch, id)
		}
		switch {
		case p.State == StateReleased && seq != 0 && p.ReleasedSeq == seq:
			return nil
		case p.State != StateApproved:
			return fmt.Errorf("%w: %s is %s", ErrNotPending, id, p.State)
		}
		p.State, p.ReleasedSeq = StateReleased, seq
		return nil
	})
}

// List returns the entries in the given states (all when none), oldest first.
func (s *Store) List(ctx context.Context, states ...State) ([]Pending, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, bus.ApprovalFilter())
	if err != nil {
		return nil, fmt.Errorf("approval: list: %w", err)
	}
	defer lister.Stop()
	var out []Pending
	for k := range lister.Keys() {
		p, err := s.Get(ctx, bus.ApprovalKeyID(k))
		if errors.Is(err, ErrNotFound) {
			continue // decided and removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if len(states) == 0 || slices.Contains(states, p.State) {
			out = append(out, p)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Pending) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Expire turns every pending entry whose expiry is at or before now into
// expired and returns those this call changed (so with several processes each
// expiry is reported by one of them).
func (s *Store) Expire(ctx context.Context, now time.Time) ([]Pending, error) {
	pend, err := s.List(ctx, StatePending)
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, p := range pend {
		if now.Before(p.ExpiresAt) {
			continue
		}
		q, err := s.update(ctx, p.RequestID, func(p *Pending) error {
			if p.State != StatePending || now.Before(p.ExpiresAt) {
				return ErrNotPending
			}
			p.State, p.DecidedAt = StateExpired, now.UTC()
			return nil
		})
		if errors.Is(err, ErrNotPending) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, q)
	}
	return out, nil
}

// markAnnounced records that an expiry was audited.
func (s *Store) markAnnounced(ctx context.Context, id string) error {
	_, err := s.update(ctx, id, func(p *Pending) error { p.Announced = true; return nil })
	return err
}

// Delete removes an entry (used for decided entries past retention).
func (s *Store) Delete(ctx context.Context, id string) error {
	k, err := key(id)
	if err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("approval: delete %s: %w", id, err)
	}
	return nil
}
