package auditquery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditindex"
	"github.com/responder-sec/responder/internal/bus"
)

// Limits of one query and one page.
const (
	Version = 1
	// DefaultLimit and MaxLimit bound the records of one page.
	DefaultLimit = 500
	MaxLimit     = 1000
	// MaxReplyBytes keeps a reply under NATS's default 1 MiB max_payload
	// (an external server's default; the embedded one allows 8 MiB).
	MaxReplyBytes = 768 << 10
	// MaxQueryBytes: larger queries are refused unread.
	MaxQueryBytes = 16 << 10
	// maxScan bounds the messages one page reads when a filter that the
	// server cannot apply (actor, target, time) skips most of them; the
	// client carries on from NextSeq.
	maxScan = 20000
)

// The operations.
const (
	OpList = "list"
	OpGet  = "get"
)

// ActionName names a refused query in the audit trail.
const ActionName = "query_audit"

// Filter is audit.Filter on the wire.
type Filter struct {
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	Actor     string    `json:"actor,omitempty"`
	Action    string    `json:"action,omitempty"`
	Target    string    `json:"target,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	Playbook  string    `json:"playbook,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
}

// FromAudit converts an audit.Filter (its TenantID is the service's own).
func FromAudit(f audit.Filter) Filter {
	return Filter{Since: f.Since, Until: f.Until, Actor: f.Actor, Action: f.Action, Target: f.Target,
		Outcome: f.Outcome, Playbook: f.Playbook, RequestID: f.RequestID}
}

func (f Filter) audit(tenant string) audit.Filter {
	return audit.Filter{Since: f.Since, Until: f.Until, Actor: f.Actor, Action: f.Action, Target: f.Target,
		Outcome: f.Outcome, Playbook: f.Playbook, RequestID: f.RequestID, TenantID: tenant}
}

// subject is the narrowest stream filter holding every record f can match.
func (f Filter) subject(tenant string) string {
	if f.Outcome == "" && f.Action == "" {
		return bus.AuditFilter(tenant)
	}
	return bus.AuditSelect(tenant, f.Outcome, f.Action)
}

// Query is a signed request for audit records.
type Query struct {
	Version int    `json:"version"`
	ID      string `json:"id"` // UUID, never reused
	Op      string `json:"op"` // list | get
	Filter  Filter `json:"filter,omitzero"`
	// RecordID (get) is a record id or a request id (its latest record).
	RecordID string `json:"record_id,omitempty"`
	// AfterSeq (list): records stored after this stream sequence.
	AfterSeq uint64 `json:"after_seq,omitempty"`
	// Order (list): OrderOldest (default) or OrderNewest. Newest first,
	// BeforeSeq is the cursor: records stored before this stream sequence
	// (0: from the end), and Reply.NextSeq the next page's BeforeSeq.
	Order     string      `json:"order,omitempty"`
	BeforeSeq uint64      `json:"before_seq,omitempty"`
	Limit     int         `json:"limit,omitempty"`
	By        audit.Actor `json:"by"`
	At        time.Time   `json:"at"`
}

// Item is one record as stored.
type Item struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

// Reply answers a Query.
type Reply struct {
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Rejected analyst.Reason `json:"rejected,omitempty"`
	// Retry says the failure passes by itself (JetStream electing a leader
	// or a server rejoining its cluster): the same query, signed afresh,
	// may succeed a moment later. Client.Do does that.
	Retry bool   `json:"retry,omitempty"`
	Items []Item `json:"items,omitempty"`
	// NextSeq is the AfterSeq of the next page; More says there is one.
	NextSeq uint64 `json:"next_seq,omitempty"`
	More    bool   `json:"more,omitempty"`
	// FirstSeq and LastSeq are the stream's when the query was read: a first
	// record above 1 was removed by retention.
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Head is the chain's kept head (audit.HeadKey, signed by an engine: the
	// client checks the signature) and MaxAge the stream's retention, on a
	// list's first page: what `audit verify` and `audit export` need.
	Head   json.RawMessage `json:"head,omitempty"`
	MaxAge time.Duration   `json:"max_age,omitempty"`
	// Indexed is the stream sequence the audit index covers (filtered and
	// newest-first pages; see internal/auditindex).
	Indexed uint64 `json:"indexed,omitempty"`
}

// Recorder appends to the audit trail (*audit.Writer).
type Recorder interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// Config wires a Service.
type Config struct {
	Tenant   string
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Verifier *analyst.Verifier
	Audit    Recorder
	Logger   *slog.Logger
}

// Service answers queries.
type Service struct {
	cfg   Config
	log   *slog.Logger
	index *auditindex.Reader
	// staleWait bounds the wait for a stale stream state (audit.StreamAtLeast;
	// its default when 0).
	staleWait time.Duration
}

// New checks cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Tenant == "" || cfg.Conn == nil || cfg.JS == nil || cfg.Verifier == nil || cfg.Audit == nil {
		return nil, errors.New("auditquery: service needs Tenant, Conn, JS, Verifier and Audit")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger, index: auditindex.NewReader(cfg.Conn, cfg.JS, cfg.Tenant)}, nil
}

// Run serves queries (one queue group across engines) until ctx ends. Queries
// are answered one at a time: a page is bounded, and a reviewer's export
// must not take the engine's connection from the action workers.
func (s *Service) Run(ctx context.Context) error {
	ch := make(chan *nats.Msg, 64)
	sub, err := s.cfg.Conn.ChanQueueSubscribe(bus.AuditQuerySubject(s.cfg.Tenant), "responder-auditquery", ch)
	if err != nil {
		return fmt.Errorf("auditquery: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			rep := s.Handle(ctx, m.Data, m.Header)
			if m.Reply == "" {
				continue
			}
			b, err := json.Marshal(rep)
			if err != nil {
				b, _ = json.Marshal(Reply{Error: "engine could not encode the page"})
			}
			if err := m.Respond(b); err != nil {
				s.log.Warn("audit query reply", "err", err)
			}
		}
	}
}

// Handle verifies one query and answers it. A refused query is audited.
func (s *Service) Handle(ctx context.Context, data []byte, hdr nats.Header) Reply {
	if len(data) > MaxQueryBytes {
		s.reject(ctx, nil, fmt.Errorf("query of %d bytes is over the %d-byte limit", len(data), MaxQueryBytes))
		return Reply{Error: "query too large", Rejected: analyst.Unauthorised}
	}
	var q Query
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil || q.Version != Version {
		return Reply{Error: fmt.Sprintf("malformed query: want a version %d query object", Version)}
	}
	who, err := s.cfg.Verifier.VerifyCommand(ctx, q.ID, q.By.KeyID, q.At, analyst.Message{Data: data, Header: hdr})
	if err != nil {
		reason := analyst.ReasonOf(err)
		if reason == "" {
			s.log.Error("verify audit query", "err", err)
			return Reply{Error: "engine could not check the query; try again", Retry: bus.Unavailable(err)}
		}
		s.reject(ctx, &q, err)
		return Reply{Error: err.Error(), Rejected: reason}
	}
	if !who.MayReview() {
		err := fmt.Errorf("%s: %s (%s) may not read the audit trail", analyst.Unauthorised, who.Name, who.Role)
		s.rejectVerified(ctx, &q, who, err)
		return Reply{Error: err.Error(), Rejected: analyst.Unauthorised}
	}
	switch q.Op {
	case OpList:
		rep, err := s.page(ctx, q)
		if err != nil {
			s.log.Error("audit query", "err", err)
			return Reply{Error: "engine could not read the audit trail: " + err.Error(), Retry: bus.Unavailable(err)}
		}
		return rep
	case OpGet:
		r, err := audit.Get(ctx, s.cfg.JS, q.RecordID)
		if err != nil {
			return Reply{Error: err.Error(), Retry: bus.Unavailable(err)}
		}
		b, err := json.Marshal(r)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		return Reply{OK: true, Items: []Item{{Seq: r.Seq, Data: b}}}
	}
	return Reply{Error: fmt.Sprintf("unknown op %q (list, get)", q.Op)}
}

// reject audits a query refused before its sender was known.
func (s *Service) reject(ctx context.Context, q *Query, err error) {
	rec := audit.Record{TenantID: s.cfg.Tenant, Outcome: audit.Rejected, Action: ActionName,
		Actor: audit.Actor{Kind: "unknown", Name: "unknown"}, Detail: "audit query " + err.Error()}
	if q != nil && (q.By.Kind != "" || q.By.Name != "" || q.By.KeyID != "") {
		rec.Actor = audit.Actor{Kind: short(q.By.Kind), Name: short(q.By.Name), KeyID: short(q.By.KeyID)}
		rec.Detail += " (sender as claimed, not verified)"
	}
	s.append(ctx, rec)
}

// rejectVerified audits a query from a known key that may not read.
func (s *Service) rejectVerified(ctx context.Context, _ *Query, who analyst.Analyst, err error) {
	s.append(ctx, audit.Record{TenantID: s.cfg.Tenant, Outcome: audit.Rejected, Action: ActionName,
		Actor: who.Actor(), Detail: "audit query " + err.Error()})
}

func (s *Service) append(ctx context.Context, rec audit.Record) {
	if _, err := s.cfg.Audit.Append(ctx, rec); err != nil {
		s.log.Error("audit a refused audit query", "err", err)
	}
	s.log.Warn("audit query refused", "detail", rec.Detail)
}

// short bounds a claimed value before it is recorded.
func short(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

// page reads one page of q.
func (s *Service) page(ctx context.Context, q Query) (Reply, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	// The kept head is read before the stream's state, so that the records
	// the head names are all within this listing (it goes in the first
	// page's reply).
	var head json.RawMessage
	if kv, err := s.cfg.JS.KeyValue(ctx, bus.BucketState); err == nil {
		if e, err := kv.Get(ctx, audit.HeadKey); err == nil {
			head = e.Value()
		}
	}
	// A stale state would end the listing early, and verify would report a
	// cut trail that is whole (audit.StreamAtLeast says when it happens).
	// The kept head's record exists (an engine wrote it); the page's cursor
	// is the caller's word, and a cursor past the end (the console asks for
	// the head with one) must not hold the page.
	var atLeast uint64
	if h, err := audit.ParseHead(head); err == nil {
		atLeast = h.Seq
	}
	st, err := audit.StreamAtLeast(ctx, s.cfg.JS, bus.StreamAudit, atLeast, s.staleWait, s.log)
	if err != nil {
		return Reply{}, err
	}
	state := st.CachedInfo().State
	rep := Reply{OK: true, FirstSeq: state.FirstSeq, LastSeq: state.LastSeq, NextSeq: q.AfterSeq}
	if q.AfterSeq == 0 {
		rep.MaxAge, rep.Head = st.CachedInfo().Config.MaxAge, head
	}
	if q.Order != "" && q.Order != OrderOldest || !q.Filter.isZero() {
		// Filtered or newest first: through the index (indexed.go).
		return s.indexedPage(ctx, q, limit, rep)
	}
	start := max(q.AfterSeq+1, state.FirstSeq)
	if state.Msgs == 0 || start > state.LastSeq {
		return rep, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{q.Filter.subject(s.cfg.Tenant)},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return Reply{}, fmt.Errorf("read %s: %w", bus.StreamAudit, err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = s.cfg.JS.DeleteConsumer(dctx, bus.StreamAudit, info.Name)
			cancel()
		}
	}()
	info := cons.CachedInfo()
	if info == nil || info.NumPending == 0 {
		if err := s.tailSeen(ctx, st, q, start-1, state.LastSeq); err != nil {
			return Reply{}, err
		}
		rep.NextSeq = state.LastSeq
		return rep, nil
	}
	f := q.Filter.audit(s.cfg.Tenant)
	size, scanned := 0, 0
	want := int(min(info.NumPending, uint64(maxScan)))
	// One consumer for the page, read as a stream of messages (a Fetch on an
	// ordered consumer would delete and create it on every call).
	it, err := cons.Messages(jetstream.PullMaxMessages(min(want, 256)))
	if err != nil {
		return Reply{}, fmt.Errorf("read %s: %w", bus.StreamAudit, err)
	}
	defer it.Stop()
	for scanned < want {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return Reply{}, fmt.Errorf("read %s: %w", bus.StreamAudit, err)
		}
		scanned++
		md, err := m.Metadata()
		if err != nil {
			return Reply{}, fmt.Errorf("read %s: %w", bus.StreamAudit, err)
		}
		seq := md.Sequence.Stream
		if seq > state.LastSeq {
			// Stored after the query arrived: the next page has it.
			return rep, nil
		}
		var r audit.Record
		if err := json.Unmarshal(m.Data(), &r); err == nil && !f.Match(r) {
			rep.NextSeq = seq
			continue
		}
		// Not a record at all: a reviewer verifying the chain must see it.
		if len(rep.Items) == limit || size+len(m.Data())+len(m.Subject())+64 > MaxReplyBytes && len(rep.Items) > 0 {
			rep.More = true
			return rep, nil
		}
		size += len(m.Data()) + len(m.Subject()) + 64
		rep.Items = append(rep.Items, Item{Seq: seq, Subject: m.Subject(), Data: append(json.RawMessage(nil), m.Data()...)})
		rep.NextSeq = seq
	}
	// Everything pending read: the page reached the stream's end.
	rep.More = uint64(scanned) < info.NumPending
	if !rep.More {
		if err := s.tailSeen(ctx, st, q, rep.NextSeq, state.LastSeq); err != nil {
			return Reply{}, err
		}
		rep.NextSeq = max(rep.NextSeq, state.LastSeq)
	}
	return rep, nil
}

// tailSeen checks, when an unfiltered page ends at read before the stream's
// last sequence, that the stream's last message is not one the page should
// have delivered. The page's ordered consumer may be placed on a replica that
// has not yet stored the stream's last records, while the state came from the
// leader: the compose smoke test's cluster profile listed AUDIT to seq 160
// with the kept head naming 161, and verify reported a cut trail that was
// whole. Such a page is a stale read (audit.ErrStaleState, transient: the
// client asks again), never a short listing.
func (s *Service) tailSeen(ctx context.Context, st jetstream.Stream, q Query, read, last uint64) error {
	if read >= last || !q.Filter.isZero() {
		return nil
	}
	prefix, ok := strings.CutSuffix(q.Filter.subject(s.cfg.Tenant), ">")
	if !ok {
		return nil
	}
	m, err := st.GetMsg(ctx, last)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Answered by a replica that lacks it too (direct get).
	case err != nil:
		return fmt.Errorf("read %s: %w", bus.StreamAudit, err)
	case !strings.HasPrefix(m.Subject, prefix):
		return nil // another tenant's record: not this listing's
	}
	return fmt.Errorf("read %s: the page ended at seq %d, the stream at %d: %w", bus.StreamAudit, read, last, audit.ErrStaleState)
}

// Client sends queries signed with one key.
type Client struct {
	NC     *nats.Conn
	Tenant string
	Key    nkeys.KeyPair
	// Name is the caller's name in the analysts file (informational).
	Name string
	// Timeout bounds each query (default 30s).
	Timeout time.Duration
}

// noEngineWait is how long Do keeps asking when no engine answers at all: an
// engine restarting after a crash serves again within seconds, while a
// mistyped tenant or a stopped deployment should be reported soon.
const noEngineWait = 10 * time.Second

// attemptTimeout bounds one request, so that a query whose engine went away
// with its server is asked again of another while the caller's time lasts.
const attemptTimeout = 10 * time.Second

// Do signs q and sends it; the reply's refusal, if any, is an error. Queries
// only read, so a failure that passes by itself (no engine answering for a
// moment, a request lost with a server, an engine whose JetStream is electing
// a leader: Reply.Retry) is asked again, signed afresh (a new query id: the
// engine refuses a repeated one), with backoff from 250 ms to 4 s, within
// Timeout (30 s by default; no engine at all is reported after 10 s).
func (c Client) Do(ctx context.Context, q Query) (Reply, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, pause := time.Now(), 250*time.Millisecond
	for attempt := 1; ; attempt++ {
		rep, again, err := c.once(ctx, q)
		if !again || ctx.Err() != nil ||
			errors.Is(err, errNoEngine) && time.Since(start)+pause > noEngineWait {
			return rep, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause {
			return rep, fmt.Errorf("%w (%d attempts)", err, attempt)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return rep, fmt.Errorf("%w (%d attempts)", err, attempt)
		case <-t.C:
		}
		pause = min(2*pause, 4*time.Second)
	}
}

var errNoEngine = errors.New("no engine is serving audit queries for this tenant (is `responder serve` running?)")

// once signs q (a fresh id and time unless the caller set them) and sends
// it; again says that the failure may pass if asked again.
func (c Client) once(ctx context.Context, q Query) (rep Reply, again bool, err error) {
	pub, err := c.Key.PublicKey()
	if err != nil {
		return Reply{}, false, fmt.Errorf("auditquery: key: %w", err)
	}
	q.Version = Version
	if q.ID == "" {
		q.ID = uuid.NewString()
	}
	if q.At.IsZero() {
		q.At = time.Now().UTC()
	}
	q.By = audit.Actor{Kind: "analyst", Name: c.Name, KeyID: pub}
	body, err := json.Marshal(q)
	if err != nil {
		return Reply{}, false, fmt.Errorf("auditquery: encode: %w", err)
	}
	h, err := analyst.SignBody(body, c.Key)
	if err != nil {
		return Reply{}, false, err
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	m, err := c.NC.RequestMsgWithContext(actx, &nats.Msg{Subject: bus.AuditQuerySubject(c.Tenant), Data: body, Header: h})
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return Reply{}, true, errNoEngine
		}
		return Reply{}, ctx.Err() == nil && bus.Transient(err), fmt.Errorf("auditquery: %s: %w", q.Op, err)
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return Reply{}, false, fmt.Errorf("auditquery: undecodable reply: %w", err)
	}
	if !rep.OK {
		if rep.Error == "" {
			rep.Error = "refused"
		}
		return rep, rep.Retry && rep.Rejected == "", errors.New(strings.TrimSpace(rep.Error))
	}
	return rep, false, nil
}

// List calls fn for every stored message f selects, in stream order, page by
// page, up to the stream's end when the first page was read. It returns the
// stream's first and last sequence as the first page saw them.
func (c Client) List(ctx context.Context, f Filter, fn func(Item) error) (first, last uint64, err error) {
	var after uint64
	for page := 0; ; page++ {
		rep, err := c.Do(ctx, Query{Op: OpList, Filter: f, AfterSeq: after})
		if err != nil {
			return first, last, err
		}
		if page == 0 {
			first, last = rep.FirstSeq, rep.LastSeq
		}
		for _, it := range rep.Items {
			if it.Seq > last {
				return first, last, nil
			}
			if err := fn(it); err != nil {
				return first, last, err
			}
		}
		if !rep.More || rep.NextSeq <= after || rep.NextSeq >= last {
			return first, last, nil
		}
		after = rep.NextSeq
	}
}

// Get returns the record with this record id, or the latest of the request
// with this id.
func (c Client) Get(ctx context.Context, id string) (audit.Record, error) {
	rep, err := c.Do(ctx, Query{Op: OpGet, RecordID: id})
	if err != nil {
		return audit.Record{}, err
	}
	if len(rep.Items) != 1 {
		return audit.Record{}, fmt.Errorf("%w: %q", audit.ErrNotFound, id)
	}
	var r audit.Record
	if err := json.Unmarshal(rep.Items[0].Data, &r); err != nil {
		return audit.Record{}, fmt.Errorf("auditquery: undecodable record: %w", err)
	}
	return r, nil
}
