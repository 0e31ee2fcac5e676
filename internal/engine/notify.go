package engine

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/clock"
	"github.com/responder-sec/responder/internal/notify"
)

// NotifySettings are the engine's notifications (internal/notify).
type NotifySettings struct {
	// Webhooks are where notifications go (their URLs are secrets).
	Webhooks []notify.Webhook
	// ConsoleURL is the console's base URL, for the link to a request's page.
	ConsoleURL string
	// HTTPClient and Clock are for tests (defaults: notify's).
	HTTPClient *http.Client
	Clock      clock.Clock
}

// notifier starts telling the webhooks about requests held for approval and
// failed ones, claimed in the tenant's state (kv) so that each is posted once
// across engines; nil without webhooks.
func (e *Engine) notifier(kv jetstream.KeyValue) (func(context.Context) error, error) {
	s := e.cfg.Notify
	if len(s.Webhooks) == 0 {
		return nil, nil
	}
	n, err := notify.New(notify.Config{Webhooks: s.Webhooks, ConsoleURL: s.ConsoleURL, Claims: kv,
		HTTPClient: s.HTTPClient, Clock: s.Clock, Logger: e.log.With("part", "notify")})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.recorder.notifier.Store(n)
	return n.Run, nil
}
