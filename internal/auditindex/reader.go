package auditindex

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// Limits of one page.
const (
	// DefaultLimit is a page's records when the query names none.
	DefaultLimit = 100
	// MaxScan bounds the stream messages and records one page reads without
	// returning them; past it the page ends early with More.
	MaxScan = 20000
	// fetchMin and fetchMax bound the direct gets of one page in flight.
	fetchMin, fetchMax = 16, 256
	// tailWindow is how many sequences of the unindexed tail one read covers.
	tailWindow = 1024
)

// Query asks for one page.
type Query struct {
	// Filter selects records (its TenantID is the Reader's).
	Filter audit.Filter
	// Newest: newest first; Cursor is then the sequence the page ends before
	// (0: the end of the stream). Oldest first: the sequence it starts after.
	Newest bool
	Cursor uint64
	// Limit bounds the page's records (default DefaultLimit).
	Limit int
	// MaxBytes, if not 0, bounds the page's stored bytes (subject and data
	// of each item, plus 64 for framing); a page holds at least one item.
	MaxBytes int
	// End, if not 0, is the last sequence a page may return (the stream's end
	// when a listing began); 0: the stream's last sequence now.
	End uint64
}

// Item is one record as stored.
type Item struct {
	Seq     uint64
	Subject string
	Data    []byte
}

// Page is one page of records in the query's order.
type Page struct {
	Items []Item
	// Next is the Cursor of the next page; More says there may be one.
	Next uint64
	More bool
	// FirstSeq and LastSeq are the AUDIT stream's when the page was read,
	// Mark the index's.
	FirstSeq, LastSeq, Mark uint64
	// Examined counts the records and stream messages the page read and did
	// not return; Buckets the index buckets it read, Fetched the records it
	// read by sequence.
	Examined, Buckets, Fetched int
	// Where the page's time went: listing buckets, reading chunks, reading
	// records.
	ListTime, ChunkTime, FetchTime time.Duration
}

// Reader answers pages from the index and the AUDIT stream. It holds no
// state between pages and is safe for concurrent use.
type Reader struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	tenant  string
	maxScan int

	mu            sync.Mutex
	auditS, index jetstream.Stream // handles, looked up once
}

// NewReader returns a Reader of tenant's records on an engine connection.
func NewReader(nc *nats.Conn, js jetstream.JetStream, tenant string) *Reader {
	return &Reader{nc: nc, js: js, tenant: tenant, maxScan: MaxScan}
}

// streams returns the handles of the AUDIT and index streams.
func (r *Reader) streams(ctx context.Context) (jetstream.Stream, jetstream.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.auditS == nil {
		s, err := r.js.Stream(ctx, bus.StreamAudit)
		if err != nil {
			return nil, nil, fmt.Errorf("auditindex: stream %s: %w", bus.StreamAudit, err)
		}
		r.auditS = s
	}
	if r.index == nil {
		s, err := r.js.Stream(ctx, bus.StreamAuditIndex)
		if err != nil {
			return nil, nil, fmt.Errorf("auditindex: stream %s: %w", bus.StreamAuditIndex, err)
		}
		r.index = s
	}
	return r.auditS, r.index, nil
}

// Page reads one page.
func (r *Reader) Page(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	s, idx, err := r.streams(ctx)
	if err != nil {
		return Page{}, err
	}
	// The mark first: every record up to it is indexed, so the stream's state
	// read next covers it.
	mark, err := markOf(ctx, idx, r.tenant)
	if err != nil {
		return Page{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return Page{}, fmt.Errorf("auditindex: stream %s: %w", bus.StreamAudit, err)
	}
	st := info.State
	end := st.LastSeq
	if q.End > 0 {
		end = min(end, q.End)
	}
	mark = min(mark, end)
	f := q.Filter
	f.TenantID = r.tenant
	p := &pager{r: r, index: idx, f: f, limit: limit, newest: q.Newest, budget: r.maxScan, maxBytes: q.MaxBytes}
	p.page = Page{FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Mark: mark}
	first := max(st.FirstSeq, 1)
	if st.Msgs == 0 || end < first {
		p.page.Next = q.Cursor
		return p.page, nil
	}
	if q.Newest {
		hi := end
		if q.Cursor > 0 {
			if q.Cursor <= first {
				p.page.Next = q.Cursor
				return p.page, nil
			}
			hi = min(hi, q.Cursor-1)
		}
		p.page.Next = first
		if hi > mark {
			if err := p.tail(ctx, max(mark+1, first), hi); err != nil || p.done {
				return p.page, err
			}
		}
		if mark >= first {
			if err := p.indexed(ctx, first, min(hi, mark)); err != nil {
				return p.page, err
			}
		}
		return p.page, nil
	}
	lo := max(q.Cursor+1, first)
	p.page.Next = max(q.Cursor, end)
	if lo > end {
		p.page.Next = q.Cursor
		return p.page, nil
	}
	if mark >= lo {
		if err := p.indexed(ctx, lo, mark); err != nil || p.done {
			return p.page, err
		}
	}
	if end > mark {
		if err := p.tail(ctx, max(lo, mark+1), end); err != nil {
			return p.page, err
		}
	}
	return p.page, nil
}

// pager fills one page.
type pager struct {
	r      *Reader
	index  jetstream.Stream
	f      audit.Filter
	limit  int
	newest bool
	budget int
	page   Page
	done   bool
	// maxBytes bounds size, the page's bytes so far (0: no bound).
	maxBytes, size int
}

// offer considers the message at seq (data nil: gone from the stream) and
// reports whether the page is done.
func (p *pager) offer(m stored, gone bool) bool {
	if !gone {
		var rec audit.Record
		if json.Unmarshal(m.data, &rec) == nil && rec.Outcome != "" && p.f.Match(rec) {
			n := len(m.data) + len(m.subject) + 64
			if p.maxBytes > 0 && p.size+n > p.maxBytes && len(p.page.Items) > 0 {
				p.page.More, p.done = true, true // Next stays at the last item
				return true
			}
			p.size += n
			p.page.Items = append(p.page.Items, Item{Seq: m.seq, Subject: m.subject, Data: m.data})
			p.page.Next = m.seq
			if len(p.page.Items) >= p.limit {
				p.page.More, p.done = true, true
			}
			return p.done
		}
	}
	p.page.Examined++
	p.page.Next = m.seq
	if p.page.Examined >= p.budget {
		p.page.More, p.done = true, true
	}
	return p.done
}

// tailSubject is the narrowest AUDIT subject holding every match.
func (p *pager) tailSubject() string {
	if p.f.Outcome == "" && p.f.Action == "" {
		return bus.AuditFilter(p.r.tenant)
	}
	return bus.AuditSelect(p.r.tenant, p.f.Outcome, p.f.Action)
}

// tail reads the AUDIT messages in [lo, hi] directly, in the page's order.
func (p *pager) tail(ctx context.Context, lo, hi uint64) error {
	subject := p.tailSubject()
	if !p.newest {
		for seq := lo; seq <= hi && !p.done; {
			n, last, err := directBatch(ctx, p.r.nc, bus.StreamAudit, seq, subject, tailWindow, func(m stored) bool {
				return m.seq <= hi && !p.offer(m, false)
			})
			if err != nil {
				return err
			}
			if n == 0 || last >= hi {
				break
			}
			seq = last + 1
		}
		if !p.done {
			p.page.Next = hi
		}
		return nil
	}
	for top := hi; top >= lo && !p.done; {
		start := lo
		if top-lo >= tailWindow {
			start = top - tailWindow + 1
		}
		var window []stored
		for seq := start; seq <= top; {
			n, last, err := directBatch(ctx, p.r.nc, bus.StreamAudit, seq, subject, tailWindow, func(m stored) bool {
				if m.seq > top {
					return false
				}
				window = append(window, m)
				return true
			})
			if err != nil {
				return err
			}
			if n == 0 || last >= top {
				break
			}
			seq = last + 1
		}
		for i := len(window) - 1; i >= 0 && !p.done; i-- {
			p.offer(window[i], false)
		}
		if start == lo {
			break
		}
		top = start - 1
	}
	if !p.done {
		p.page.Next = lo
	}
	return nil
}

// group is one dimension of the filter: a record needs any of its keys.
type group struct {
	subjects []string // per alternative: its key's subject filter (bucket ".*")
	buckets  map[uint64]bool
}

// indexed reads [lo, hi] through the index, in the page's order.
func (p *pager) indexed(ctx context.Context, lo, hi uint64) error {
	t0 := time.Now()
	groups, err := p.list(ctx)
	p.page.ListTime += time.Since(t0)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if len(g.buckets) == 0 {
			p.finish(lo, hi)
			return nil // some dimension has no record at all
		}
	}
	// The dimension with the fewest buckets drives; the others narrow it.
	slices.SortFunc(groups, func(a, b *group) int { return len(a.buckets) - len(b.buckets) })
	var buckets []uint64
	for b := range groups[0].buckets {
		if b >= lo/BucketSize && b <= hi/BucketSize {
			buckets = append(buckets, b)
		}
	}
	slices.Sort(buckets)
	if p.newest {
		slices.Reverse(buckets)
	}
	minSec, maxSec := int64(math.MinInt64), int64(math.MaxInt64)
	if !p.f.Since.IsZero() {
		minSec = p.f.Since.Unix()
	}
	if !p.f.Until.IsZero() {
		maxSec = p.f.Until.Unix()
	}
	if minSec != math.MinInt64 || maxSec != math.MaxInt64 {
		// Skip the buckets whose records all lie outside the time range.
		t0 := time.Now()
		spans := p.spans(ctx)
		p.page.ListTime += time.Since(t0)
		buckets = slices.DeleteFunc(buckets, func(b uint64) bool {
			sp, ok := spans[b]
			return ok && (sp.max < minSec || sp.min > maxSec)
		})
	}
	for _, b := range buckets {
		var cand []entry
		p.page.Buckets++
		t0 := time.Now()
		lists, err := p.readBucket(ctx, groups, b)
		p.page.ChunkTime += time.Since(t0)
		if err != nil {
			return err
		}
		for i, es := range lists {
			if i == 0 {
				cand = es
			} else {
				cand = intersect(cand, es)
			}
		}
		cand = slices.DeleteFunc(cand, func(e entry) bool {
			return e.seq < lo || e.seq > hi || e.sec < minSec || e.sec > maxSec
		})
		if p.newest {
			slices.Reverse(cand)
		}
		if err := p.fetch(ctx, cand); err != nil || p.done {
			return err
		}
	}
	p.finish(lo, hi)
	return nil
}

// spans reads every bucket's span (one multi-last direct get). A bucket
// without one, or every bucket when they cannot be read, is not skipped.
func (p *pager) spans(ctx context.Context) map[uint64]span {
	out := map[uint64]span{}
	got, err := directMany(ctx, p.r.nc, bus.StreamAuditIndex, []directReq{{MultiLast: []string{bus.AuditIndexSpanFilter(p.r.tenant)}, Batch: 1024}})
	if err != nil {
		return out
	}
	for _, m := range got[0] {
		b, err := strconv.ParseUint(m.subject[strings.LastIndexByte(m.subject, '.')+1:], 10, 64)
		if err != nil {
			continue
		}
		if sp, ok := decodeSpan(m.data); ok {
			out[b] = sp
		}
	}
	return out
}

// finish notes that [lo, hi] was read to its end.
func (p *pager) finish(lo, hi uint64) {
	if p.newest {
		p.page.Next = lo
	} else {
		p.page.Next = hi
	}
}

// list finds, for each dimension of the filter, the buckets its keys have
// entries in (stream info with a subject filter, answered from the server's
// per-subject index), all dimensions at once.
func (p *pager) list(ctx context.Context) ([]*group, error) {
	var groups []*group
	type job struct {
		g      *group
		filter string
	}
	var jobs []job
	for _, alts := range plan(p.f) {
		g := &group{buckets: map[uint64]bool{}}
		for _, t := range alts {
			filter := bus.AuditIndexKeyFilter(p.r.tenant, t.dim, Key(t.dim, t.value))
			g.subjects = append(g.subjects, filter)
			jobs = append(jobs, job{g, filter})
		}
		groups = append(groups, g)
	}
	found := make([][]string, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			info, err := p.index.Info(ctx, jetstream.WithSubjectFilter(j.filter))
			if err != nil {
				errs[i] = fmt.Errorf("auditindex: list %s: %w", j.filter, err)
				return
			}
			for subj := range info.State.Subjects {
				found[i] = append(found[i], subj)
			}
		})
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for _, subj := range found[i] {
			if b, err := strconv.ParseUint(subj[strings.LastIndexByte(subj, '.')+1:], 10, 64); err == nil {
				j.g.buckets[b] = true
			}
		}
	}
	return groups, nil
}

// readBucket returns, for each group, the entries of its keys in bucket b,
// sorted by sequence, without duplicates: the chunks of every key are asked
// for at once.
func (p *pager) readBucket(ctx context.Context, groups []*group, b uint64) ([][]entry, error) {
	type key struct{ g, alt int }
	var (
		keys []key
		reqs []directReq
	)
	for gi, g := range groups {
		for ai, filter := range g.subjects {
			keys = append(keys, key{gi, ai})
			reqs = append(reqs, directReq{NextFor: filter[:len(filter)-1] + strconv.FormatUint(b, 10), Batch: directBatchMax})
		}
	}
	lists := make([][]entry, len(groups))
	for len(reqs) > 0 {
		got, err := directMany(ctx, p.r.nc, bus.StreamAuditIndex, reqs)
		if err != nil {
			return nil, err
		}
		var moreKeys []key
		var more []directReq
		for i, msgs := range got {
			g := keys[i].g
			for _, m := range msgs {
				// A malformed chunk narrows nothing: its entries are skipped.
				lists[g], _ = decodeChunk(m.data, lists[g])
			}
			if len(msgs) == reqs[i].Batch {
				// A full batch: the key has more chunks in this bucket.
				moreKeys = append(moreKeys, keys[i])
				more = append(more, directReq{Seq: msgs[len(msgs)-1].seq + 1, NextFor: reqs[i].NextFor, Batch: directBatchMax})
			}
		}
		keys, reqs = moreKeys, more
	}
	for g, es := range lists {
		slices.SortFunc(es, func(a, b entry) int {
			switch {
			case a.seq < b.seq:
				return -1
			case a.seq > b.seq:
				return 1
			}
			return 0
		})
		lists[g] = slices.CompactFunc(es, func(a, b entry) bool { return a.seq == b.seq })
	}
	return lists, nil
}

// intersect keeps the entries of a (sorted) whose sequence is in b (sorted).
func intersect(a, b []entry) []entry {
	out := a[:0]
	j := 0
	for _, e := range a {
		for j < len(b) && b[j].seq < e.seq {
			j++
		}
		if j < len(b) && b[j].seq == e.seq {
			out = append(out, e)
		}
	}
	return out
}

// fetch reads the records of cand (in the page's order) and offers them,
// a group of direct gets at a time.
func (p *pager) fetch(ctx context.Context, cand []entry) error {
	for len(cand) > 0 && !p.done {
		n := min(len(cand), max(p.limit-len(p.page.Items), fetchMin), fetchMax)
		group := cand[:n]
		cand = cand[n:]
		reqs := make([]directReq, n)
		for i, e := range group {
			reqs[i] = directReq{Seq: e.seq}
		}
		t0 := time.Now()
		got, err := directMany(ctx, p.r.nc, bus.StreamAudit, reqs)
		p.page.FetchTime += time.Since(t0)
		if err != nil {
			return err
		}
		p.page.Fetched += n
		for i, msgs := range got {
			if len(msgs) == 0 {
				// Aged out since it was indexed.
				if p.offer(stored{seq: group[i].seq}, true) {
					return nil
				}
				continue
			}
			if p.offer(msgs[0], false) {
				return nil
			}
		}
	}
	return nil
}
