package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	abs "github.com/microsoft/kiota-abstractions-go"

	"github.com/responder-sec/responder/internal/actions"
)

type foundMessage struct {
	ID                string `json:"id"`
	InternetMessageID string `json:"internetMessageId,omitempty"`
	Subject           string `json:"subject,omitempty"`
	From              string `json:"from,omitempty"`
	ReceivedDateTime  string `json:"receivedDateTime,omitempty"`
}

// mailboxReport is purge_mail's result for one mailbox.
type mailboxReport struct {
	Mailbox  string         `json:"mailbox"`
	Found    int            `json:"found"`
	Deleted  int            `json:"deleted"`
	Already  int            `json:"already_deleted,omitempty"`
	Skipped  string         `json:"skipped,omitempty"`
	Error    string         `json:"error,omitempty"`
	Messages []foundMessage `json:"messages,omitempty"` // the first maxListed found
	err      *actions.Error
}

const (
	maxListed     = 50
	msgSelect     = "id,internetMessageId,subject,from,receivedDateTime"
	permMailRead  = "Mail.ReadBasic.All"
	permUsersList = "User.Read.All"
)

// messageItem is a message as a search lists it ($select msgSelect).
type messageItem struct {
	ID                string `json:"id"`
	InternetMessageID string `json:"internetMessageId"`
	Subject           string `json:"subject"`
	From              struct {
		EmailAddress struct {
			Address string `json:"address"`
		} `json:"emailAddress"`
	} `json:"from"`
	ReceivedDateTime string `json:"receivedDateTime"`
}

// searchMessages lists the messages of path matching the query, each page
// decoded in one pass (listAs); items without an id are left out.
func (e *Executor) searchMessages(ctx context.Context, c *calls, path, q, user string) ([]foundMessage, error) {
	items, err := listAs[messageItem](ctx, e, c, path, q, permMailRead, e.outlook(user))
	if err != nil {
		return nil, err
	}
	out := make([]foundMessage, 0, len(items))
	for _, m := range items {
		if m.ID == "" {
			continue
		}
		out = append(out, foundMessage{ID: m.ID, InternetMessageID: m.InternetMessageID, Subject: m.Subject,
			From: m.From.EmailAddress.Address, ReceivedDateTime: m.ReceivedDateTime})
	}
	return out, nil
}

// purgeMail searches each mailbox (PurgeMailboxes at a time, each within its
// Outlook concurrency) and deletes what it finds.
func (e *Executor) purgeMail(ctx context.Context, q *actions.PurgeQuery, perm string, plan bool) (actions.Result, error) {
	c := newCalls()
	boxes := q.Mailboxes
	if q.AllMailboxes {
		raws, err := e.list(ctx, c, "users", query("$select", "id,userPrincipalName,mail", "$top", "999"), permUsersList, e.entraRead(1))
		if err != nil {
			return actions.Result{GraphRequestIDs: c.list()}, err
		}
		for _, r := range raws {
			var u struct {
				ID   string `json:"id"`
				UPN  string `json:"userPrincipalName"`
				Mail string `json:"mail"`
			}
			if json.Unmarshal(r, &u) == nil && u.Mail != "" {
				boxes = append(boxes, u.UPN)
			}
		}
	}
	filter := q.Filter()
	reports := make([]*mailboxReport, len(boxes))
	sem := make(chan struct{}, e.cfg.PurgeMailboxes)
	var wg sync.WaitGroup
	for i, box := range boxes {
		reports[i] = &mailboxReport{Mailbox: box}
		wg.Add(1)
		go func() { // owned: purgeMail waits for it
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				reports[i].err = Classify(ctx.Err(), perm)
				return
			}
			defer func() { <-sem }()
			e.purgeMailbox(ctx, c, reports[i], q, filter, perm, plan)
		}()
	}
	wg.Wait()

	var found, deleted, already, failed int
	var firstErr *actions.Error
	for _, r := range reports {
		found += r.Found
		deleted += r.Deleted
		already += r.Already
		if r.err != nil {
			failed++
			r.Error = r.err.Error()
			if firstErr == nil || r.err.Class != actions.Permanent {
				firstErr = r.err
			}
		}
	}
	mode := "soft delete (move to Deleted Items; the user or an admin can restore them)"
	if q.Hard {
		mode = "hard delete (permanentDelete: cannot be undone)"
	}
	before, _ := json.Marshal(map[string]any{"query": q, "filter": filter, "mode": mode, "mailboxes": reports})
	counts := make([]map[string]any, 0, len(reports))
	for _, r := range reports {
		m := map[string]any{"mailbox": r.Mailbox, "found": r.Found, "deleted": r.Deleted}
		if r.Already > 0 {
			m["already_deleted"] = r.Already
		}
		if r.Skipped != "" {
			m["skipped"] = r.Skipped
		}
		if r.Error != "" {
			m["error"] = r.Error
		}
		counts = append(counts, m)
	}
	after, _ := json.Marshal(map[string]any{"mode": mode, "mailboxes": counts})
	// A retryable failure in any mailbox fails the request so the worker
	// retries it; a re-run finds only what is left.
	if firstErr != nil && (firstErr.Class != actions.Permanent || deleted == 0 && found == 0) {
		return actions.Result{GraphRequestIDs: c.list()}, firstErr
	}
	per := make([]string, 0, len(reports))
	for _, r := range reports {
		if r.Found > 0 || r.Error != "" {
			s := fmt.Sprintf("%s: found %d, deleted %d", r.Mailbox, r.Found, r.Deleted)
			if r.Error != "" {
				s += " (error: " + r.Error + ")"
			}
			per = append(per, s)
		}
	}
	sort.Strings(per)
	summary := strings.Join(per, "; ")
	if plan {
		return actions.Result{Detail: fmt.Sprintf("%s %d message(s) found in %d mailbox(es) matching %s: %s", mode, found, len(boxes), filter, summary),
			Before: before, GraphRequestIDs: c.list()}, nil
	}
	if found == 0 && already == 0 {
		return actions.Result{Detail: fmt.Sprintf("no message matches %s in %d mailbox(es)", filter, len(boxes)), Before: before, After: after,
			GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	if deleted == 0 && failed == 0 {
		return actions.Result{Detail: fmt.Sprintf("%d matching message(s) already deleted (%s)", already, mode), Before: before, After: after,
			GraphRequestIDs: c.list(), AlreadyDone: true}, nil
	}
	return actions.Result{Detail: fmt.Sprintf("%s: deleted %d of %d message(s) found in %d mailbox(es) matching %s: %s", mode, deleted, found, len(boxes), filter, summary),
		Before: before, After: after, GraphRequestIDs: c.list()}, nil
}

// purgeMailbox finds and deletes in one mailbox, filling r.
func (e *Executor) purgeMailbox(ctx context.Context, c *calls, r *mailboxReport, q *actions.PurgeQuery, filter, perm string, plan bool) {
	user := r.Mailbox
	qs := query("$filter", filter, "$select", msgSelect, "$top", "100")
	msgs, err := e.searchMessages(ctx, c, seg("users", user, "messages"), qs, user)
	if err != nil {
		ce := actions.AsError(err)
		if ce.Status == http.StatusNotFound && (ce.Code == "MailboxNotEnabledForRESTAPI" || ce.Code == "ErrorInvalidUser" || ce.Code == "ResourceNotFound") {
			r.Skipped = "no mailbox (" + ce.Code + ")"
			return
		}
		r.err = ce
		return
	}
	if !q.Hard {
		// Soft delete: what is already in Deleted Items is done.
		inDeleted, err := e.searchMessages(ctx, c, seg("users", user, "mailFolders", "deleteditems", "messages"), query("$filter", filter, "$select", "id", "$top", "100"), user)
		if err != nil {
			r.err = actions.AsError(err)
			return
		}
		skip := map[string]bool{}
		for _, m := range inDeleted {
			skip[m.ID] = true
		}
		kept := msgs[:0]
		for _, m := range msgs {
			if skip[m.ID] {
				r.Already++
				continue
			}
			kept = append(kept, m)
		}
		msgs = kept
	}
	r.Found = len(msgs)
	r.Messages = msgs
	if len(msgs) > maxListed {
		r.Messages = msgs[:maxListed]
	}
	if plan || len(msgs) == 0 {
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// As many workers as the mailbox admits requests in flight, each taking
	// the next message until none is left: the mailbox budget still bounds
	// the requests in flight, and a few long-lived goroutines cost less than
	// one per message (each grows its stack through the SDK's middleware).
	var next atomic.Int64
	workers := min(max(e.budgets.outlookMax, 1), len(msgs))
	for range workers {
		wg.Add(1)
		go func() { // owned: purgeMailbox waits for every worker
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) {
					return
				}
				m := msgs[i]
				var err error
				if q.Hard {
					_, err = e.mailboxCall(ctx, c, user, abs.POST, seg("users", user, "messages", m.ID, "permanentDelete"), "", nil, perm)
				} else {
					_, err = e.mailboxCall(ctx, c, user, abs.POST, seg("users", user, "messages", m.ID, "move"), "", map[string]any{"destinationId": "deleteditems"}, perm)
				}
				mu.Lock()
				switch ce := actions.AsError(err); {
				case err == nil:
					r.Deleted++
				case ce.Status == http.StatusNotFound:
					r.Already++
				default:
					if r.err == nil || ce.Class != actions.Permanent {
						r.err = ce
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// addPurge registers purge_mail; a hard purge is announced when accepted.
func (e *Executor) addPurge(h actions.Handlers) {
	perm := permission(actions.PurgeMail)
	h[actions.PurgeMail] = actions.Handler{
		Execute: func(ctx context.Context, _ *actions.Request, p actions.Params) (actions.Result, error) {
			return e.purgeMail(ctx, p.Purge, perm, false)
		},
		Plan: func(ctx context.Context, _ *actions.Request, p actions.Params) (actions.Result, error) {
			return e.purgeMail(ctx, p.Purge, perm, true)
		},
		Warn: func(_ *actions.Request, p actions.Params) string {
			if p.Purge != nil && p.Purge.Hard {
				return "hard delete (permanentDelete): purged messages cannot be recovered by anyone, and Responder cannot undo it"
			}
			return ""
		},
	}
}
