package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestServeRefusesAPlainWebhookWithoutShowingIt: a webhook URL that would send
// its secret in clear stops serve with an error naming the setting, and the
// URL (a credential) is not printed.
func TestServeRefusesAPlainWebhookWithoutShowingIt(t *testing.T) {
	clearEnv(t)
	for _, c := range []struct{ flag, env string }{
		{"--notify-teams-url", "RESPONDER_NOTIFY_TEAMS_URL"},
		{"--notify-slack-url", "RESPONDER_NOTIFY_SLACK_URL"},
		{"--notify-webhook-url", "RESPONDER_NOTIFY_WEBHOOK_URL"},
	} {
		var out, errb bytes.Buffer
		args := []string{"serve", "--sandbox", "--data-dir", t.TempDir(), c.flag, "http://hooks.example.com/services/T0/B0/s3cr3tTOKEN"}
		code := run(args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.env) {
			t.Errorf("%s: exit %d, stderr %q; want an error naming %s", c.flag, code, errb.String(), c.env)
		}
		if strings.Contains(errb.String()+out.String(), "s3cr3tTOKEN") {
			t.Errorf("%s: the webhook URL appears in the output", c.flag)
		}
	}
}

func TestNotifyConsoleURLDefaults(t *testing.T) {
	for _, c := range []struct {
		flags          notifyFlags
		redirect, addr string
		want           string
	}{
		{notifyFlags{}, "", "127.0.0.1:9464", "http://127.0.0.1:9464"},
		{notifyFlags{}, "https://responder.contoso.com/auth/callback", "127.0.0.1:9464", "https://responder.contoso.com"},
		{notifyFlags{NotifyConsoleURL: "https://soc.contoso.com/responder"}, "https://x/auth/callback", "", "https://soc.contoso.com/responder"},
	} {
		s, err := c.flags.notifySettings(c.redirect, c.addr)
		if err != nil || s.ConsoleURL != c.want {
			t.Errorf("%+v %q %q: %q %v, want %q", c.flags, c.redirect, c.addr, s.ConsoleURL, err, c.want)
		}
	}
}
