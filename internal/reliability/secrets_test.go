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

// TestNoSecretLeaksAcrossADemoRun runs the whole demo with debug logging and
// looks for the client secret in every log line, the timeline, every audit
// record, the returned error, and every byte the engine stored on disk
// (JetStream files: streams, KV).
func TestNoSecretLeaksAcrossADemoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("full demo run")
	}
	var logs, out lockedBuffer
	var secret string
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{
		Out: &out, DataDir: dataDir, PlaybookDir: "../../playbooks", Timeout: 60 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Prepare: func(tn *m365sim.Tenant) {
			secret = tn.Info().ClientSecret
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
	t.Logf("searched %d bytes of logs, %d audit records, %d stored files", len(logs.String()), len(res.Records), files)
}
