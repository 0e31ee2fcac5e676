package auditquery

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/responder-sec/responder/internal/auditindex"
)

// The orders of a list query.
const (
	OrderOldest = "oldest"
	OrderNewest = "newest"
)

func (f Filter) isZero() bool {
	return f.Since.IsZero() && f.Until.IsZero() && f.Actor == "" && f.Action == "" && f.Target == "" &&
		f.Outcome == "" && f.Playbook == "" && f.RequestID == ""
}

// indexedPage answers a filtered or newest-first list query through the audit
// index: it reads only the index chunks of the filter's values and the
// records they name, whatever the length of the trail. rep carries the
// stream's state and, on a first page, the kept head. Pages hold records
// only (a message that is not a record is for verify, which lists unfiltered).
func (s *Service) indexedPage(ctx context.Context, q Query, limit int, rep Reply) (Reply, error) {
	var cursor uint64
	switch q.Order {
	case "", OrderOldest:
		cursor = q.AfterSeq
	case OrderNewest:
		cursor = q.BeforeSeq
		if q.BeforeSeq != 0 || q.AfterSeq != 0 {
			rep.MaxAge, rep.Head = 0, nil // not a first page
		}
	default:
		return Reply{}, fmt.Errorf("unknown order %q (%s, %s)", q.Order, OrderOldest, OrderNewest)
	}
	p, err := s.index.Page(ctx, auditindex.Query{
		Filter: q.Filter.audit(s.cfg.Tenant), Newest: q.Order == OrderNewest, Cursor: cursor,
		Limit: limit, MaxBytes: MaxReplyBytes, End: rep.LastSeq,
	})
	if err != nil {
		return Reply{}, err
	}
	rep.Items = make([]Item, len(p.Items))
	for i, it := range p.Items {
		rep.Items[i] = Item{Seq: it.Seq, Subject: it.Subject, Data: json.RawMessage(it.Data)}
	}
	rep.NextSeq, rep.More, rep.Indexed = p.Next, p.More, p.Mark
	return rep, nil
}

// Page asks for one list page: oldest first from after cursor, or (order
// OrderNewest) newest first from before cursor (0: the end). Reply.NextSeq
// is the next page's cursor and Reply.More says whether there is one. This
// is what the console's timeline and `audit list` page with.
func (c Client) Page(ctx context.Context, f Filter, order string, cursor uint64, limit int) (Reply, error) {
	q := Query{Op: OpList, Filter: f, Order: order, Limit: limit}
	if order == OrderNewest {
		q.BeforeSeq = cursor
	} else {
		q.AfterSeq = cursor
	}
	return c.Do(ctx, q)
}
