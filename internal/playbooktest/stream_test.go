package playbooktest

import (
	"bufio"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunStreams: the result of the first element of a "value" list is
// written before the rest of the input exists.
func TestRunStreams(t *testing.T) {
	set := loadShipped(t)
	rec := mustRead(t, filepath.Join(shippedDir, "testdata", "high-risk-user.fires.json"))
	in, feed := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), set, in, "s.json", outW, true)
		outW.Close()
	}()
	go func() {
		_, _ = io.WriteString(feed, `{"value":[`+rec+`,`)
	}()
	lines := bufio.NewScanner(outR)
	got := make(chan string, 1)
	go func() {
		if lines.Scan() {
			got <- lines.Text()
		}
		close(got)
	}()
	select {
	case l := <-got:
		if !strings.Contains(l, `"index":0`) || !strings.Contains(l, "high-risk-user") {
			t.Errorf("first line %s", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no output before the input ended: not streaming")
	}
	go func() {
		_, _ = io.WriteString(feed, rec+`]}`)
		feed.Close()
	}()
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
