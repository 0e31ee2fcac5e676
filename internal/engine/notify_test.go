package engine

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/notify"
)

// TestApprovalWaitIsPostedToTeams: when a playbook step waits for approval,
// the Teams webhook (a test double of the receiving service) gets one
// Adaptive Card naming the action and the user, with a link to the
// request's console page; the webhook's URL appears nowhere in the trail.
func TestApprovalWaitIsPostedToTeams(t *testing.T) {
	const secret = "/webhookb2/SECRET-4e1d/IncomingWebhook/c0ffee"
	var (
		mu    sync.Mutex
		cards [][]byte
	)
	got := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != secret {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		mu.Lock()
		cards = append(cards, b)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		got <- struct{}{}
	}))
	defer srv.Close()
	h := newHarness(t)
	h.startWith(func(c *Config) {
		c.Notify = NotifySettings{Webhooks: []notify.Webhook{{Kind: notify.Teams, URL: srv.URL + secret}},
			ConsoleURL: "https://responder.contoso.com"}
	})
	h.attack("alice@contoso.com")
	pending := h.waitRecord(func(r audit.Record) bool {
		return r.Target["user"] == "alice@contoso.com" && r.Action == "confirm_compromised" && r.Outcome == audit.PendingApproval
	})
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no notification for the request waiting for approval")
	}
	mu.Lock()
	card := string(cards[0])
	mu.Unlock()
	var msg struct {
		Attachments []struct {
			ContentType string `json:"contentType"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal([]byte(card), &msg); err != nil || len(msg.Attachments) != 1 ||
		msg.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("not an Adaptive Card: %s", card)
	}
	for _, want := range []string{"Approval needed", "confirm", "alice@contoso", "https://responder.contoso.com/requests/" + pending.RequestID} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q: %s", want, card)
		}
	}
	for _, r := range h.records() {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), "SECRET-4e1d") {
			t.Fatalf("the webhook URL is in the audit trail: %s", b)
		}
	}
}
