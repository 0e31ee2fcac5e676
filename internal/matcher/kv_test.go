package matcher

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsKV is a real JetStream server on loopback storing in dir, and a
// connection to its state bucket.
type natsKV struct {
	srv *server.Server
	nc  *nats.Conn
	kv  jetstream.KeyValue
}

func startKV(t *testing.T, dir string) *natsKV {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready")
	}
	n := &natsKV{srv: s}
	n.kv = n.connect(t)
	return n
}

// connect opens another connection to the bucket (another engine process).
func (n *natsKV) connect(t *testing.T) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(n.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if n.nc == nil {
		n.nc = nc
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "responder_state"})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func (n *natsKV) stop() {
	n.nc.Close()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}
