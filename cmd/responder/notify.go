package main

import (
	"fmt"
	"strings"

	"github.com/responder-sec/responder/internal/engine"
	"github.com/responder-sec/responder/internal/notify"
)

// notifyFlags are serve's notification settings. Webhook URLs are secrets
// (whoever holds one can post to the channel): set them through the
// environment rather than the command line, which other local users can
// read; they never appear in logs, errors or the audit trail.
type notifyFlags struct {
	NotifyTeamsURL   string `name:"notify-teams-url" help:"Microsoft Teams webhook (an incoming webhook, or a Workflows 'When a Teams webhook request is received' URL) told, as an Adaptive Card, of requests waiting for approval and of failed ones. A secret." env:"RESPONDER_NOTIFY_TEAMS_URL"`
	NotifySlackURL   string `name:"notify-slack-url" help:"Slack incoming webhook told of requests waiting for approval and of failed ones. A secret." env:"RESPONDER_NOTIFY_SLACK_URL"`
	NotifyWebhookURL string `name:"notify-webhook-url" help:"Any HTTPS endpoint that receives a JSON object for each request waiting for approval or failed. A secret." env:"RESPONDER_NOTIFY_WEBHOOK_URL"`
	NotifyConsoleURL string `name:"notify-console-url" help:"The console's address as people reach it, for the link in notifications (default: --console-redirect-url without its path, else http://<ops-addr>)." env:"RESPONDER_NOTIFY_CONSOLE_URL"`
}

// settings checks the flags; errors name the setting, never its value.
func (f notifyFlags) notifySettings(redirectURL, opsAddr string) (engine.NotifySettings, error) {
	var s engine.NotifySettings
	for _, h := range []struct {
		kind notify.Kind
		url  string
		env  string
	}{
		{notify.Teams, f.NotifyTeamsURL, "RESPONDER_NOTIFY_TEAMS_URL"},
		{notify.Slack, f.NotifySlackURL, "RESPONDER_NOTIFY_SLACK_URL"},
		{notify.Generic, f.NotifyWebhookURL, "RESPONDER_NOTIFY_WEBHOOK_URL"},
	} {
		if h.url == "" {
			continue
		}
		w := notify.Webhook{Kind: h.kind, URL: h.url}
		if err := w.Check(); err != nil {
			return s, fmt.Errorf("%s (--%s-url): %w", h.env, flagName(h.kind), err)
		}
		s.Webhooks = append(s.Webhooks, w)
	}
	s.ConsoleURL = f.NotifyConsoleURL
	if s.ConsoleURL == "" {
		switch {
		case redirectURL != "":
			if i := strings.Index(redirectURL, "://"); i >= 0 {
				if j := strings.IndexByte(redirectURL[i+3:], '/'); j >= 0 {
					s.ConsoleURL = redirectURL[:i+3+j]
				} else {
					s.ConsoleURL = redirectURL
				}
			}
		case opsAddr != "":
			s.ConsoleURL = "http://" + opsAddr
		}
	}
	return s, nil
}

func flagName(k notify.Kind) string {
	if k == notify.Generic {
		return "notify-webhook"
	}
	return "notify-" + string(k)
}
