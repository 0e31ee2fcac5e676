package m365sim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// The mail handlers lock per mailbox (the tenant lock shared): deletes,
// moves and listings on two mailboxes run side by side with messages being
// added, and every change lands where it belongs. Run with -race. A move
// gives the item a new id (Exchange does) and the old id is gone; an id of
// another mailbox's message is not found and that message is untouched.
func TestMailHandlersRunPerMailbox(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	g := tn.Info().GraphURL
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	a := tn.AddUser(User{UserPrincipalName: "conc-a@contoso.com"}).UserPrincipalName
	b := tn.AddUser(User{UserPrincipalName: "conc-b@contoso.com"}).UserPrincipalName
	seed := func(upn string, n int) []string {
		ids := make([]string, n)
		for i := range ids {
			id, err := tn.AddMessage(upn, Message{Subject: fmt.Sprintf("m%d", i), FromAddress: "x@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = id
		}
		return ids
	}
	aIDs, bIDs := seed(a, 40), seed(b, 20)
	msgURL := func(upn, id, action string) string {
		u := g + "/users/" + url.PathEscape(upn) + "/messages/" + url.PathEscape(id)
		if action != "" {
			u += "/" + action
		}
		return u
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	moved := map[string]string{} // old id -> new id
	errs := make(chan string, 200)
	for i, id := range aIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i < 20 {
				if resp, body := do(t, tn, "POST", msgURL(a, id, "permanentDelete"), tok, ""); resp.StatusCode != 204 {
					errs <- fmt.Sprintf("permanentDelete %d: %d %s", i, resp.StatusCode, body)
				}
				return
			}
			resp, body := do(t, tn, "POST", msgURL(a, id, "move"), tok, `{"destinationId":"deleteditems"}`)
			var m struct {
				ID string `json:"id"`
			}
			if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &m) != nil || m.ID == "" || m.ID == id {
				errs <- fmt.Sprintf("move %d: %d %s", i, resp.StatusCode, body)
				return
			}
			mu.Lock()
			moved[id] = m.ID
			mu.Unlock()
		}()
	}
	for range 10 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if resp, body := do(t, tn, "GET", g+"/users/"+url.PathEscape(b)+"/messages?$top=1000&$select=id,subject", tok, ""); resp.StatusCode != 200 {
				errs <- fmt.Sprintf("list: %d %s", resp.StatusCode, body)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := tn.AddMessage(b, Message{Subject: "late", FromAddress: "y@example.com"}); err != nil {
				errs <- err.Error()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	for i, id := range aIDs[:20] {
		if f, ok := tn.MessageState(a, id); f != "purged" || !ok {
			t.Errorf("message %d: %q %t, want purged", i, f, ok)
		}
		if resp, _ := do(t, tn, "POST", msgURL(a, id, "permanentDelete"), tok, ""); resp.StatusCode != 404 {
			t.Errorf("second permanentDelete of %d: %d, want 404", i, resp.StatusCode)
		}
	}
	for old, nid := range moved {
		if _, ok := tn.MessageState(a, old); ok {
			t.Errorf("moved message still found by its old id")
		}
		if resp, body := do(t, tn, "GET", msgURL(a, old, ""), tok, ""); resp.StatusCode != 404 || !strings.Contains(body, "ErrorItemNotFound") {
			t.Errorf("GET by the old id: %d %s", resp.StatusCode, body)
		}
		if f, ok := tn.MessageState(a, nid); f != "deleteditems" || !ok {
			t.Errorf("moved message: %q %t, want deleteditems", f, ok)
		}
	}
	if len(moved) != 20 {
		t.Errorf("%d moves answered, want 20", len(moved))
	}

	// Another mailbox's id: not found here, and that message is untouched.
	tn.ResetWireLog()
	if resp, body := do(t, tn, "POST", msgURL(a, bIDs[0], "permanentDelete"), tok, ""); resp.StatusCode != 404 || !strings.Contains(body, "ErrorItemNotFound") {
		t.Errorf("delete of another mailbox's message: %d %s", resp.StatusCode, body)
	}
	if f, ok := tn.MessageState(b, bIDs[0]); f != "inbox" || !ok {
		t.Errorf("the other mailbox's message: %q %t, want inbox", f, ok)
	}
	if wl := tn.WireLog(); len(wl) != 1 || wl[0].Status != 404 {
		t.Errorf("wire log %+v, want the refused delete as 404", wl)
	}
	resp, body := do(t, tn, "GET", g+"/users/"+url.PathEscape(b)+"/messages?$top=1000&$select=id", tok, "")
	var page struct {
		Value []json.RawMessage `json:"value"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Value) != 30 {
		t.Errorf("mailbox b: %d, %d messages, want 30", resp.StatusCode, len(page.Value))
	}
}
