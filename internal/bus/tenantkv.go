package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// prefixTenant starts every key of a tenant's part of the state bucket:
// "t.<tenant>.<key>". One cluster can then carry several tenants without one
// reading or overwriting another's requests, approvals, checkpoints or counts,
// and a NATS permission on $KV.responder_state.t.<tenant>.> can confine a
// process to one tenant.
const prefixTenant = "t."

// ErrTenantView is returned by the KeyValue methods a tenant view does not
// offer (watches and bucket-wide maintenance belong to the whole bucket).
var ErrTenantView = errors.New("bus: not offered on a tenant's view of the state bucket")

// TenantPrefix is the key prefix of tenant's part of the state bucket.
func TenantPrefix(tenant string) string { return prefixTenant + Token(tenant) + "." }

// TenantState is tenant's view of the state bucket kv: every key the view's
// user passes (built by the functions of keys.go) is stored under
// TenantPrefix(tenant), and every key it reads back has the prefix removed.
// The components that keep state take a view, never the whole bucket, so no
// key can be written outside its tenant's namespace by forgetting a prefix.
func TenantState(kv jetstream.KeyValue, tenant string) jetstream.KeyValue {
	return &tenantKV{kv: kv, prefix: TenantPrefix(tenant)}
}

// TenantState returns tenant's view of the shared KV bucket (TenantState).
func (b *Bus) TenantState(ctx context.Context, tenant string) (jetstream.KeyValue, error) {
	kv, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	return TenantState(kv, tenant), nil
}

type tenantKV struct {
	kv     jetstream.KeyValue
	prefix string
}

func (t *tenantKV) k(key string) string { return t.prefix + key }

func (t *tenantKV) entry(e jetstream.KeyValueEntry, err error) (jetstream.KeyValueEntry, error) {
	if e == nil {
		return nil, err
	}
	return tenantEntry{KeyValueEntry: e, key: strings.TrimPrefix(e.Key(), t.prefix)}, err
}

func (t *tenantKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return t.entry(t.kv.Get(ctx, t.k(key)))
}

func (t *tenantKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	return t.entry(t.kv.GetRevision(ctx, t.k(key), revision))
}

func (t *tenantKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return t.kv.Put(ctx, t.k(key), value)
}

func (t *tenantKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	return t.kv.PutString(ctx, t.k(key), value)
}

func (t *tenantKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	return t.kv.Create(ctx, t.k(key), value, opts...)
}

func (t *tenantKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return t.kv.Update(ctx, t.k(key), value, revision)
}

func (t *tenantKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return t.kv.Delete(ctx, t.k(key), opts...)
}

func (t *tenantKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return t.kv.Purge(ctx, t.k(key), opts...)
}

func (t *tenantKV) History(ctx context.Context, key string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	es, err := t.kv.History(ctx, t.k(key), opts...)
	out := make([]jetstream.KeyValueEntry, 0, len(es))
	for _, e := range es {
		te, _ := t.entry(e, nil)
		out = append(out, te)
	}
	return out, err
}

func (t *tenantKV) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	if len(filters) == 0 {
		filters = []string{">"}
	}
	scoped := make([]string, len(filters))
	for i, f := range filters {
		scoped[i] = t.k(f)
	}
	inner, err := t.kv.ListKeysFiltered(ctx, scoped...)
	if err != nil {
		return nil, err
	}
	l := &tenantLister{inner: inner, out: make(chan string, 64), done: make(chan struct{})}
	go l.run(ctx, t.prefix)
	return l, nil
}

func (t *tenantKV) ListKeys(ctx context.Context, _ ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	return t.ListKeysFiltered(ctx, ">")
}

func (t *tenantKV) Keys(ctx context.Context, _ ...jetstream.WatchOpt) ([]string, error) {
	l, err := t.ListKeysFiltered(ctx, ">")
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, jetstream.ErrNoKeysFound
	}
	return keys, nil
}

func (t *tenantKV) Watch(context.Context, string, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return nil, fmt.Errorf("Watch: %w", ErrTenantView)
}

func (t *tenantKV) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return nil, fmt.Errorf("WatchAll: %w", ErrTenantView)
}

func (t *tenantKV) WatchFiltered(context.Context, []string, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return nil, fmt.Errorf("WatchFiltered: %w", ErrTenantView)
}

func (t *tenantKV) PurgeDeletes(context.Context, ...jetstream.KVPurgeOpt) error {
	return fmt.Errorf("PurgeDeletes: %w", ErrTenantView)
}

func (t *tenantKV) Bucket() string { return t.kv.Bucket() }

func (t *tenantKV) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	return t.kv.Status(ctx)
}

// tenantEntry is an entry read through a tenant view: its key without the
// tenant's prefix.
type tenantEntry struct {
	jetstream.KeyValueEntry
	key string
}

func (e tenantEntry) Key() string { return e.key }

// tenantLister strips the tenant's prefix from the keys of inner. Its
// goroutine ends when inner's keys end, when Stop is called or when the
// listing's context ends.
type tenantLister struct {
	inner jetstream.KeyLister
	out   chan string
	done  chan struct{}
	once  sync.Once
}

func (l *tenantLister) run(ctx context.Context, prefix string) {
	defer close(l.out)
	in := l.inner.Keys()
	for {
		var k string
		select {
		case key, ok := <-in:
			if !ok {
				return
			}
			k = strings.TrimPrefix(key, prefix)
		case <-l.done:
			return
		case <-ctx.Done():
			return
		}
		select {
		case l.out <- k:
		case <-l.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (l *tenantLister) Keys() <-chan string { return l.out }

func (l *tenantLister) Stop() error {
	l.once.Do(func() { close(l.done) })
	return l.inner.Stop()
}

// MigrateTenantKeys moves the keys an engine of an earlier version wrote
// without a tenant prefix into tenant's part of the bucket, so that
// checkpoints, held approvals, request states and scheduled expiries survive
// the upgrade. keep names keys that stay bucket-wide (the audit head). A key
// already present under the prefix wins (another engine moved it first). It
// returns how many keys it moved.
func MigrateTenantKeys(ctx context.Context, kv jetstream.KeyValue, tenant string, keep ...string) (int, error) {
	keys, err := kv.Keys(ctx, jetstream.MetaOnly())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: migrate state keys: %w", err)
	}
	prefix := TenantPrefix(tenant)
	moved := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefixTenant) || slices.Contains(keep, k) {
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("bus: migrate state key %s: %w", k, err)
		}
		if _, err := kv.Create(ctx, prefix+k, e.Value()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return moved, fmt.Errorf("bus: migrate state key %s: %w", k, err)
		}
		if err := kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return moved, fmt.Errorf("bus: migrate state key %s: remove the old key: %w", k, err)
		}
		moved++
	}
	return moved, nil
}
