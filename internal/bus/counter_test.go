package bus

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// testKV starts a real JetStream server on loopback (a port of its own, a
// temporary store) and returns a fresh bucket.
func testKV(t *testing.T) jetstream.KeyValue {
	t.Helper()
	kv, err := plainJS(t).CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "test_state"})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestCountOnceConcurrent: many writers counting distinct ids against one
// limit, each id offered twice, never count past the limit, and each id is
// counted at most once.
func TestCountOnceConcurrent(t *testing.T) {
	kv := testKV(t)
	ctx := context.Background()
	const writers, max = 16, 10
	var mu sync.Mutex
	admitted := map[string]int{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			id := string(rune('a' + w))
			for range 2 { // the second call is a redelivery
				ok, n, err := CountOnce(ctx, kv, "blast.test.1", id, max)
				if err != nil {
					t.Error(err)
					return
				}
				if n > max {
					t.Errorf("count %d past max %d", n, max)
				}
				if ok {
					mu.Lock()
					admitted[id]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	e, err := kv.Get(ctx, "blast.test.1")
	if err != nil {
		t.Fatal(err)
	}
	var c onceCounter
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		t.Fatal(err)
	}
	if c.Count != max || len(c.IDs) != max {
		t.Fatalf("stored count %d with %d ids, want %d", c.Count, len(c.IDs), max)
	}
	if len(admitted) != max {
		t.Fatalf("%d ids admitted, want %d", len(admitted), max)
	}
	for id, n := range admitted {
		if n != 2 {
			t.Errorf("id %s admitted %d times of 2 (a redelivery of a counted id must stay admitted)", id, n)
		}
	}
}

// TestCountOnceReadsEarlierValues: counters written by the matcher ("events")
// and the workers ("requests") before the counter had one home keep their ids.
func TestCountOnceReadsEarlierValues(t *testing.T) {
	kv := testKV(t)
	ctx := context.Background()
	if _, err := kv.Put(ctx, "k.events", []byte(`{"count":1,"events":["e1"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k.requests", []byte(`{"count":2,"requests":["r1","r2"]}`)); err != nil {
		t.Fatal(err)
	}
	if ok, n, err := CountOnce(ctx, kv, "k.events", "e1", 1); err != nil || !ok || n != 1 {
		t.Fatalf("e1 again: ok=%v n=%d err=%v", ok, n, err)
	}
	if ok, n, err := CountOnce(ctx, kv, "k.requests", "r3", 2); err != nil || ok || n != 2 {
		t.Fatalf("r3 past the limit: ok=%v n=%d err=%v", ok, n, err)
	}
	// A value nobody can read is an error, not a reset limit.
	if _, err := kv.Put(ctx, "k.bad", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := CountOnce(ctx, kv, "k.bad", "x", 5); err == nil || ok {
		t.Fatalf("unreadable counter: ok=%v err=%v, want an error", ok, err)
	}
}

// TestUpdateContention: a writer that always loses the race gives up after
// its attempts with ErrContended; a change function's error is returned as is.
func TestUpdateContention(t *testing.T) {
	kv := testKV(t)
	ctx := context.Background()
	calls := 0
	err := Update(ctx, kv, "k", 3, func(cur []byte) ([]byte, bool, error) {
		calls++
		// Another writer changes the key between our read and our write.
		if _, err := kv.Put(ctx, "k", []byte{byte(calls)}); err != nil {
			return nil, false, err
		}
		return []byte("mine"), true, nil
	})
	if !errors.Is(err, ErrContended) || calls != 3 {
		t.Fatalf("err=%v after %d calls, want ErrContended after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := Update(ctx, kv, "k", 0, func([]byte) ([]byte, bool, error) { return nil, false, boom }); !errors.Is(err, boom) {
		t.Fatalf("err=%v, want the change function's", err)
	}
}
