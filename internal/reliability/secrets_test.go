package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/demo"
	"github.com/responder-sec/responder/internal/m365sim"
)

// lockedBuffer is a log sink shared by the engine's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretLeaksAcrossADemoRun plays every demo scenario (as `responder
// demo --scenario all` does) with debug logging and looks for the client
// secret, and for every password reset_password generated during the run, in
// every log line, the timeline, every audit record, the returned error, and
// every byte the engine stored on disk (JetStream files: streams, KV).
func TestNoSecretLeaksAcrossADemoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("full demo run")
	}
	var resets int
	for _, sc := range demo.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			if noSecretLeaks(t, sc.Name) {
				resets++
			}
		})
	}
	if resets == 0 {
		t.Error("no scenario reset a password: the generated-password check proved nothing")
	}
}

// noSecretLeaks plays one scenario and reports whether a password was reset.
func noSecretLeaks(t *testing.T, scenario string) (reset bool) {
	var logs, out lockedBuffer
	var secret string
	var tenant *m365sim.Tenant
	passwords := map[string]string{} // user id -> password before the run
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{
		Out: &out, DataDir: dataDir, PlaybookDir: "../../playbooks", Timeout: 60 * time.Second, Scenario: scenario,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Prepare: func(tn *m365sim.Tenant) {
			tenant = tn
			secret = tn.Info().ClientSecret
			for _, u := range tn.Users() {
				passwords[u.ID], _ = tn.Password(u.ID)
			}
			// A token expiry and a failing call, so that error paths log too.
			tn.ExpireTokens()
			tn.AddFault(m365sim.Fault{Method: "GET", PathPrefix: "/v1.0/users/", Status: 503, Count: 1})
		},
	})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if len(secret) < 16 {
		t.Fatalf("implausible client secret %q from the emulator", secret)
	}
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) && !strings.Contains(logs.String(), `"level":"INFO"`) {
		t.Fatal("no logs captured: the test would prove nothing")
	}
	// Also catch an encoded form (JSON-escaped, or URL-encoded in a form body).
	needles := map[string]string{"client secret": secret}
	if b, _ := json.Marshal(secret); string(b[1:len(b)-1]) != secret {
		needles["client secret (JSON-escaped)"] = string(b[1 : len(b)-1])
	}
	for _, u := range tenant.Users() {
		if pw, ok := tenant.Password(u.ID); ok && pw != passwords[u.ID] {
			if len(pw) < 12 {
				t.Fatalf("implausible generated password %q for %s", pw, u.UserPrincipalName)
			}
			reset = true
			needles["generated password of "+u.UserPrincipalName] = pw
			if b, _ := json.Marshal(pw); string(b[1:len(b)-1]) != pw {
				needles["generated password of "+u.UserPrincipalName+" (JSON-escaped)"] = string(b[1 : len(b)-1])
			}
		}
	}
	look := func(where, text string) {
		for what, n := range needles {
			if strings.Contains(text, n) {
				i := strings.Index(text, n)
				t.Errorf("%s appears in %s: …%s…", what, where, text[max(0, i-120):min(len(text), i+len(n)+40)])
			}
		}
	}
	look("the engine logs", logs.String())
	look("the demo timeline", out.String())
	for _, r := range res.Records {
		b, _ := json.Marshal(r)
		look("audit record "+r.ID, string(b))
	}
	files := 0
	if err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		look("stored file "+strings.TrimPrefix(p, dataDir), string(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("searched %d bytes of logs, %d audit records, %d stored files for %d secrets", len(logs.String()), len(res.Records), files, len(needles))
	return reset
}
