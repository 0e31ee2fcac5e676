package demo

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestDefenderScenarios: each Defender XDR alert scenario fires its playbook
// through the alerts feed and every step takes effect in the tenant (device
// isolated, indicators created, sender blocked, mail purged, IP blocked).
func TestDefenderScenarios(t *testing.T) {
	dir := copyPlaybooks(t, nil)
	for _, sc := range defenderScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var buf, logs bytes.Buffer
			res, err := Run(context.Background(), Options{Out: &buf, DataDir: t.TempDir(), PlaybookDir: dir, Scenario: sc.name, Approve: true, Timeout: 60 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil || !res.Contained {
				t.Fatalf("%s: %v\n%s\n%s", sc.name, err, buf.String(), grepLogs(logs.String()))
			}
			if !strings.Contains(buf.String(), sc.playbook) {
				t.Errorf("output does not name %s:\n%s", sc.playbook, buf.String())
			}
			t.Log(buf.String())
		})
	}
}

func grepLogs(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "matcher") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
