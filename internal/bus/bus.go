package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Config says where the backbone is.
type Config struct {
	// URL of an external NATS cluster. Empty: run an embedded server.
	URL string
	// Embedded server settings (ignored when URL is set).
	Host     string // default 127.0.0.1: loopback only unless told otherwise
	Port     int    // -1 picks a free port; 0 means the NATS default 4222
	StoreDir string // JetStream store; required for the embedded server
	// Name is the client connection name seen by the server.
	Name string
	// Replicas for streams and buckets (1 for the embedded server, 3 in a cluster).
	Replicas int
	// AuditMaxAge is the audit retention (default 400 days).
	AuditMaxAge time.Duration
	// CallTimeout bounds each JetStream request made through Bus.JS, whatever
	// the caller's deadline (default DefaultCallTimeout; negative: unbounded).
	CallTimeout time.Duration
	Logger      *slog.Logger

	// Auth is this process's NATS identity. With an embedded server, Auth.Key
	// is the engine key (nil: a key made for this run, for tests and
	// benchmarks) and the server trusts it with everything.
	Auth ClientAuth
	// Tenant scopes the embedded server's permissions (the subjects of other
	// tenants are closed to analysts and reviewers).
	Tenant string
	// Identities are the other keys the embedded server lets in, with their
	// rights (Bus.SetIdentities changes them while running). Nobody else may
	// connect: there is no anonymous user.
	Identities []Identity
	// TLS is the embedded server's certificate; required when Host is not a
	// loopback address.
	TLS ServerTLS
}

// Bus is a live connection to the backbone, and the embedded server if it owns one.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	srv    *server.Server
	log    *slog.Logger
	closed chan struct{}
	// connect are the options every connection of this process uses (its
	// identity, inbox prefix, TLS or in-process transport).
	connect []nats.Option
	url     string
	auth    ClientAuth

	// The embedded server's users, swapped by SetIdentities.
	mu        sync.Mutex
	authn     *nkeyAuth
	tenant    string
	engineKey string
}

// ErrPlainNonLoopback: the embedded server would listen beyond this machine
// without TLS.
var ErrPlainNonLoopback = errors.New("bus: the embedded NATS server listens beyond loopback only with TLS (--nats-listen-tls-cert and --nats-listen-tls-key)")

// ErrNoStoreDir is returned when an embedded server has nowhere to keep its streams.
var ErrNoStoreDir = errors.New("bus: an embedded NATS server needs a data directory (--data-dir)")

// Open connects to the configured NATS, starting the embedded server first when no
// URL is set. The caller owns the Bus and must Close it.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Bus{log: log}
	url := cfg.URL
	auth := cfg.Auth
	if url == "" {
		if cfg.StoreDir == "" {
			return nil, ErrNoStoreDir
		}
		host := cfg.Host
		if host == "" {
			host = "127.0.0.1"
		}
		tlsCfg, err := cfg.TLS.config()
		if err != nil {
			return nil, err
		}
		if tlsCfg == nil && !IsLoopback(host) {
			return nil, fmt.Errorf("%w: listen address %s", ErrPlainNonLoopback, host)
		}
		if auth.Key == nil {
			if auth.NkeyFile != "" || auth.CredsFile != "" {
				return nil, errors.New("bus: the embedded NATS server trusts the engine key, not --nats-nkey or --nats-creds")
			}
			if auth.Key, err = nkeys.CreateUser(); err != nil {
				return nil, fmt.Errorf("bus: engine key: %w", err)
			}
		}
		enginePub, err := auth.Key.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("bus: engine key: %w", err)
		}
		b.tenant, b.engineKey = cfg.Tenant, enginePub
		b.authn = newNkeyAuth(b.users(cfg.Identities))
		srv, err := server.NewServer(&server.Options{
			ServerName: "responder-embedded",
			Host:       host,
			Port:       cfg.Port,
			JetStream:  true,
			StoreDir:   cfg.StoreDir,
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20,
			TLSConfig:  tlsCfg,
			TLSTimeout: 2,
			TLSVerify:  cfg.TLS.CAFile != "",
			// Users by nkey (embedauth.go): every client signs the nonce
			// of its INFO with a listed key; nobody is anonymous.
			CustomClientAuthentication: b.authn,
			AlwaysEnableNonce:          true,
		})
		if err != nil {
			return nil, fmt.Errorf("bus: embedded NATS server: %w", err)
		}
		srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			return nil, fmt.Errorf("bus: embedded NATS server on %s:%d did not become ready", host, cfg.Port)
		}
		b.srv = srv
		url = srv.ClientURL()
		if tlsCfg != nil {
			// The engine's own connection stays inside the process: no
			// client certificate of its own is needed to reach its server.
			b.connect = append(b.connect, nats.InProcessServer(srv))
		}
		log.Info("embedded NATS server started", "url", url, "store", cfg.StoreDir, "tls", tlsCfg != nil, "users", len(cfg.Identities)+1)
	}
	authOpts, err := auth.Options()
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	b.connect = append(b.connect, authOpts...)
	b.url, b.auth = url, auth
	name := cfg.Name
	if name == "" {
		name = "responder"
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(url, append(slices.Clone(b.connect),
		nats.Name(name),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
	)...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("bus: connect to NATS at %s: %w", url, err)
	}
	b.NC = nc
	b.closed = closed
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if err := ensureWhenReady(ctx, js, cfg, log); err != nil {
		b.Close()
		return nil, err
	}
	callTimeout := cfg.CallTimeout
	if callTimeout == 0 {
		callTimeout = DefaultCallTimeout
	}
	b.JS = Bounded(js, callTimeout)
	return b, nil
}

// EnsureWait bounds how long Open waits for JetStream to answer: a cluster
// that is still forming, or electing leaders after a server was lost, refuses
// or times out stream requests for a few seconds.
const EnsureWait = 2 * time.Minute

// ensureWhenReady runs Ensure through WhenReady: engines started with their
// cluster (docker-compose's cluster profile) wait for it instead of exiting
// and being restarted.
func ensureWhenReady(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) error {
	return WhenReady(ctx, log, "streams and buckets", func() error { return Ensure(ctx, js, cfg) })
}

// WhenReady runs fn, and again (after 250 ms, doubling to 8 s) while its
// errors are Unavailable, for at most EnsureWait; then fn's error is
// returned. what names the step in the warnings.
func WhenReady(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	deadline := time.Now().Add(EnsureWait)
	pause := 250 * time.Millisecond
	for {
		err := fn()
		if err == nil || !Unavailable(err) || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			return err
		}
		log.Warn("JetStream is not answering yet (a cluster forming or electing leaders); trying again", "step", what, "in", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, 8*time.Second)
	}
}

// ClientURL is the URL other processes use to reach this bus ("" if external and
// unknown).
func (b *Bus) ClientURL() string {
	if b.srv != nil {
		return b.srv.ClientURL()
	}
	if b.NC != nil {
		return b.NC.ConnectedUrl()
	}
	return ""
}

// Connect opens another connection to the bus as this process (the same
// identity and inbox prefix as b.NC). The caller closes it.
func (b *Bus) Connect(opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(b.url, append(slices.Clone(b.connect), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to NATS at %s: %w", b.url, err)
	}
	return nc, nil
}

// Auth is this process's NATS identity: another Bus of the same process
// joins as the same user with Config{URL: b.ClientURL(), Auth: b.Auth()}.
func (b *Bus) Auth() ClientAuth { return b.auth }

// users are the embedded server's users: the engine key and ids.
func (b *Bus) users(ids []Identity) []*server.NkeyUser {
	return NkeyUsers(b.tenant, append([]Identity{{PublicKey: b.engineKey, Engine: true}}, ids...))
}

// SetIdentities replaces the keys the embedded server lets in (besides the
// engine's own): a key no longer listed is disconnected at once and cannot
// connect again; a key whose rights changed is disconnected too and gets its
// new rights when its client reconnects. No server reload (embedauth.go).
// With an external server it does nothing (its users are the cluster's
// configuration).
func (b *Bus) SetIdentities(ids []Identity) error {
	if b.srv == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := closeConnections(b.srv, b.authn.set(b.users(ids))); err != nil {
		return fmt.Errorf("bus: close the connections of removed or changed keys: %w", err)
	}
	return nil
}

// Embedded reports whether this process runs the NATS server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// Close drains the connection and stops the embedded server, waiting for it.
func (b *Bus) Close() {
	if b.NC != nil {
		// Drain is asynchronous: wait for the closed callback, bounded.
		if err := b.NC.Drain(); err == nil {
			select {
			case <-b.closed:
			case <-time.After(10 * time.Second):
			}
		}
		b.NC.Close()
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}

// State returns the shared KV bucket.
func (b *Bus) State(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.JS.KeyValue(ctx, BucketState)
	if err != nil {
		return nil, fmt.Errorf("bus: kv %s: %w", BucketState, err)
	}
	return kv, nil
}

// Ensure creates or updates every stream and bucket Responder uses. It is safe to
// call from several processes at once.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	auditAge := cfg.AuditMaxAge
	if auditAge <= 0 {
		auditAge = 400 * 24 * time.Hour
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "normalised Microsoft 365 events, one per source record state",
			Subjects:    []string{"m365.*.event.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  2 * time.Hour, // longer than any feed's overlap window
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
		{
			Name:        StreamActions,
			Description: "action requests from playbooks and analysts",
			Subjects:    []string{"responder.*.action.>"},
			Retention:   jetstream.WorkQueuePolicy,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  2 * time.Hour,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
		{
			Name:        StreamAudit,
			Description: "tamper-evident audit trail (hash chain)",
			Subjects:    []string{"responder.*.audit.>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      auditAge,
			DenyDelete:  true,
			DenyPurge:   true,
			// Record ids are deterministic per request and state: a record re-sent
			// after a crash within this window is stored once.
			Duplicates: time.Hour,
			Storage:    jetstream.FileStorage,
			Replicas:   replicas,
			// Filtered pages read the records the index names by sequence
			// (internal/auditindex); only engine identities reach $JS.>.
			AllowDirect: true,
		},
		AuditIndexStreamConfig(auditAge, replicas),
	}
	// Without an explicit replica count, a stream that exists keeps its own:
	// a process started without --replicas must not scale a cluster's R3
	// streams down to one copy.
	keep := func(name string, r int) (int, error) {
		if cfg.Replicas > 0 {
			return r, nil
		}
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return r, nil
		}
		if err != nil {
			return 0, fmt.Errorf("bus: stream %s: %w", name, err)
		}
		if n := st.CachedInfo().Config.Replicas; n > 0 {
			return n, nil
		}
		return r, nil
	}
	for _, sc := range streams {
		r, err := keep(sc.Name, sc.Replicas)
		if err != nil {
			return err
		}
		sc.Replicas = r
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: stream %s: %w", sc.Name, err)
		}
	}
	kvReplicas, err := keep("KV_"+BucketState, replicas)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "checkpoints, leases, idempotency results, suppression windows, approvals",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    kvReplicas,
	}); err != nil {
		return fmt.Errorf("bus: kv %s: %w", BucketState, err)
	}
	return nil
}
