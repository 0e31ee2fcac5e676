package main

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/bus"
)

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if n == 0 {
		n = -1
	}
	return h, n, nil
}

// natsAuthFlags say how a process proves who it is to an external NATS
// cluster, and the TLS it speaks there.
type natsAuthFlags struct {
	NatsCreds   string `name:"nats-creds" help:"NATS credentials file (JWT and seed, operator mode)." env:"RESPONDER_NATS_CREDS" type:"path"`
	NatsNkey    string `name:"nats-nkey" help:"NATS nkey seed file (serve: the engine's NATS user; commands: default is the key they sign with)." env:"RESPONDER_NATS_NKEY" type:"path"`
	NatsTLSCert string `name:"nats-tls-cert" help:"Client certificate for NATS (mutual TLS)." env:"RESPONDER_NATS_TLS_CERT" type:"path"`
	NatsTLSKey  string `name:"nats-tls-key" help:"Private key of --nats-tls-cert (mode 0600)." env:"RESPONDER_NATS_TLS_KEY" type:"path"`
	NatsTLSCA   string `name:"nats-tls-ca" help:"CA bundle that signed the NATS servers' certificates." env:"RESPONDER_NATS_TLS_CA" type:"path"`
}

// clientAuth is the NATS identity of a process: the nkey or creds file when
// one is named, else kp (the key the command signs with; nil for serve,
// whose engine key the caller sets for the embedded server).
func (f natsAuthFlags) clientAuth(kp nkeys.KeyPair) bus.ClientAuth {
	a := bus.ClientAuth{NkeyFile: f.NatsNkey, CredsFile: f.NatsCreds, TLSCert: f.NatsTLSCert, TLSKey: f.NatsTLSKey, TLSCA: f.NatsTLSCA}
	if a.NkeyFile == "" && a.CredsFile == "" {
		a.Key = kp // replies come back under this key's own inbox prefix
	}
	return a
}

// connectNATS connects a command to the engine's NATS as the holder of kp.
func connectNATS(url, name string, f natsAuthFlags, kp nkeys.KeyPair) (*nats.Conn, error) {
	opts, err := f.clientAuth(kp).Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(name), nats.Timeout(5*time.Second))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to the engine's NATS at %s: %w", url, err)
	}
	return nc, nil
}

// checkListen refuses an address beyond loopback that would carry plain text.
func checkListen(setting, addr string, hasTLS bool) error {
	if addr == "" || hasTLS {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	if !bus.IsLoopback(host) {
		return fmt.Errorf("%s %s is not a loopback address and would carry plain text: keep it on 127.0.0.1, or give it TLS", setting, addr)
	}
	return nil
}
