package bus

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestTenantStateKeepsTenantsApart: two tenants on one bucket write the same
// key; each reads back only its own value and lists only its own keys, and the
// bucket itself shows both under their tenant's prefix.
func TestTenantStateKeepsTenantsApart(t *testing.T) {
	ctx := context.Background()
	kv := testKV(t)
	a := TenantState(kv, "11111111-aaaa-4aaa-8aaa-111111111111")
	b := TenantState(kv, "contoso.onmicrosoft.com") // a name with dots stays one token
	key := RequestStateKey("req-1")
	if _, err := a.Put(ctx, key, []byte("A")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, key, []byte("B")); err != nil {
		t.Fatalf("tenant b's create of a key tenant a holds: %v", err)
	}
	for name, v := range map[string]jetstream.KeyValue{"A": a, "B": b} {
		e, err := v.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Value()) != name || e.Key() != key {
			t.Errorf("tenant %s read %q under %q", name, e.Value(), e.Key())
		}
	}
	if _, err := a.Put(ctx, ExpiryKey("req-2"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	l, err := b.ListKeysFiltered(ctx, ExpiryFilter())
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for k := range l.Keys() {
		seen = append(seen, k)
	}
	if len(seen) != 0 {
		t.Errorf("tenant b listed tenant a's expiries: %v", seen)
	}
	keys, err := a.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if want := []string{ExpiryKey("req-2"), key}; !slices.Equal(keys, want) {
		t.Errorf("tenant a keys %v, want %v", keys, want)
	}
	raw, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(raw)
	want := []string{
		"t.11111111-aaaa-4aaa-8aaa-111111111111." + ExpiryKey("req-2"),
		"t.11111111-aaaa-4aaa-8aaa-111111111111." + key,
		"t.contoso_onmicrosoft_com." + key,
	}
	if !slices.Equal(raw, want) {
		t.Errorf("bucket keys %v, want %v", raw, want)
	}
	if _, err := a.WatchAll(ctx); !errors.Is(err, ErrTenantView) {
		t.Errorf("a bucket-wide watch through a tenant view: %v", err)
	}
}

// TestMigrateTenantKeys moves an earlier version's unprefixed keys into the
// tenant's part, keeps the listed bucket-wide keys, lets a key already moved
// (by another engine) win, and moves nothing the second time.
func TestMigrateTenantKeys(t *testing.T) {
	ctx := context.Background()
	kv := testKV(t)
	const tenant = "t1"
	old := map[string]string{
		CheckpointKey("signins"):    "2026-12-01T00:00:00Z",
		ApprovalKey("req-9"):        "held",
		RequestStateKey("req-9"):    "claimed",
		"audit.head":                "head",
		TenantPrefix("other") + "x": "other tenant's",
	}
	for k, v := range old {
		if _, err := kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	view := TenantState(kv, tenant)
	if _, err := view.Put(ctx, RequestStateKey("req-9"), []byte("succeeded")); err != nil {
		t.Fatal(err)
	}
	n, err := MigrateTenantKeys(ctx, kv, tenant, "audit.head")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("moved %d keys, want 3", n)
	}
	for k, want := range map[string]string{
		CheckpointKey("signins"): "2026-12-01T00:00:00Z",
		ApprovalKey("req-9"):     "held",
		RequestStateKey("req-9"): "succeeded", // the newer state wins
	} {
		e, err := view.Get(ctx, k)
		if err != nil {
			t.Fatalf("%s after migration: %v", k, err)
		}
		if string(e.Value()) != want {
			t.Errorf("%s = %q, want %q", k, e.Value(), want)
		}
		if _, err := kv.Get(ctx, k); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("old key %s still there: %v", k, err)
		}
	}
	for _, k := range []string{"audit.head", TenantPrefix("other") + "x"} {
		if _, err := kv.Get(ctx, k); err != nil {
			t.Errorf("%s was moved: %v", k, err)
		}
	}
	if n, err := MigrateTenantKeys(ctx, kv, tenant, "audit.head"); err != nil || n != 0 {
		t.Errorf("second migration moved %d (%v), want 0", n, err)
	}
}
