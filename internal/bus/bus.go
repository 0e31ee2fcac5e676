package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
}

// Bus is a live connection to the backbone, and the embedded server if it owns one.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	srv    *server.Server
	log    *slog.Logger
	closed chan struct{}
}

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
	if url == "" {
		if cfg.StoreDir == "" {
			return nil, ErrNoStoreDir
		}
		host := cfg.Host
		if host == "" {
			host = "127.0.0.1"
		}
		opts := &server.Options{
			ServerName: "responder-embedded",
			Host:       host,
			Port:       cfg.Port,
			JetStream:  true,
			StoreDir:   cfg.StoreDir,
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20,
		}
		srv, err := server.NewServer(opts)
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
		log.Info("embedded NATS server started", "url", url, "store", cfg.StoreDir)
	}
	name := cfg.Name
	if name == "" {
		name = "responder"
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
	)
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
	if err := Ensure(ctx, js, cfg); err != nil {
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
		},
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
