package matcher

import (
	"context"
	"testing"
	"time"
)

// TestSuppressWindow: the first event claims the window; another event in the
// window is held and told who holds it; the holder re-handled keeps its claim;
// after the window another event takes over. Time is injected.
func TestSuppressWindow(t *testing.T) {
	ctx := context.Background()
	n := startKV(t, t.TempDir())
	defer n.stop()
	kv2 := n.connect(t)
	const win = 10 * time.Minute
	if held, _, err := suppress(ctx, n.kv, "alice@contoso.com", "e1", win, t0); err != nil || held {
		t.Fatalf("first claim: held=%v err=%v", held, err)
	}
	held, holder, err := suppress(ctx, kv2, "alice@contoso.com", "e2", win, t0.Add(time.Minute))
	if err != nil || !held || holder.EventID != "e1" || !holder.Until.Equal(t0.Add(win)) {
		t.Fatalf("second event in the window: held=%v holder=%+v err=%v", held, holder, err)
	}
	if held, _, err := suppress(ctx, n.kv, "alice@contoso.com", "e1", win, t0.Add(2*time.Minute)); err != nil || held {
		t.Fatalf("holder re-handled: held=%v err=%v", held, err)
	}
	if held, _, err := suppress(ctx, n.kv, "bob@contoso.com", "e2", win, t0.Add(time.Minute)); err != nil || held {
		t.Fatalf("another key: held=%v err=%v", held, err)
	}
	if held, _, err := suppress(ctx, kv2, "alice@contoso.com", "e3", win, t0.Add(win)); err != nil || held {
		t.Fatalf("after the window: held=%v err=%v", held, err)
	}
	if held, holder, _ := suppress(ctx, n.kv, "alice@contoso.com", "e1", win, t0.Add(win+time.Second)); !held || holder.EventID != "e3" {
		t.Fatalf("the old holder after a takeover: held=%v holder=%+v", held, holder)
	}
	// A value nobody can read is taken over, not an error for every event.
	if _, err := n.kv.Put(ctx, "suppress.carol=40contoso=2Ecom", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if held, _, err := suppress(ctx, n.kv, "carol@contoso.com", "e9", win, t0); err != nil || held {
		t.Fatalf("unreadable window: held=%v err=%v", held, err)
	}
}

// TestBlastRadiusWindow: at most max distinct events per window; a counted
// event handled again stays within; the next window counts from zero.
func TestBlastRadiusWindow(t *testing.T) {
	ctx := context.Background()
	n := startKV(t, t.TempDir())
	defer n.stop()
	const max, win = 2, time.Hour
	for i, want := range []bool{true, true, false} {
		ok, _, err := blastRadius(ctx, n.kv, "p", string(rune('a'+i)), max, win, t0.Add(time.Duration(i)*time.Minute))
		if err != nil || ok != want {
			t.Fatalf("event %d: ok=%v err=%v, want %v", i, ok, err, want)
		}
	}
	if ok, n, err := blastRadius(ctx, n.kv, "p", "a", max, win, t0.Add(30*time.Minute)); err != nil || !ok || n != 2 {
		t.Fatalf("redelivered counted event: ok=%v n=%d err=%v", ok, n, err)
	}
	if ok, n, err := blastRadius(ctx, n.kv, "p", "c", max, win, t0.Add(win)); err != nil || !ok || n != 1 {
		t.Fatalf("next window: ok=%v n=%d err=%v", ok, n, err)
	}
	if ok, _, err := blastRadius(ctx, n.kv, "p", "z", 0, win, t0); err != nil || !ok {
		t.Fatalf("no limit: ok=%v err=%v", ok, err)
	}
}
