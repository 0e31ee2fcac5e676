package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The trust model (design.md, "Trust model"): every connection authenticates,
// and each identity may touch only its own subjects.
//
//	engine    everything (streams, KV, JetStream API, audit appends, results)
//	analyst   publish its signed requests, approval commands and audit queries;
//	          receive only on its own inbox prefix and its own result subjects
//	reviewer  publish audit queries; receive only on its own inbox prefix
//
// An analyst or reviewer has no JetStream API right at all: a JetStream
// publish is a plain publish whose acknowledgement comes back to the
// publisher's own inbox, so requests still reach ACTIONS, but no one but the
// engine can create consumers, read EVENTS, ACTIONS or AUDIT, or touch a KV
// bucket ($KV.> is a publish to a stream like any other).

// Identity is one key allowed on the bus and what it may do there. One key may
// be an analyst and a reviewer at once (the local administrator).
type Identity struct {
	// PublicKey is the user nkey (U…) the client authenticates with.
	PublicKey string
	// Engine: everything.
	Engine bool
	// Analyst: publish action requests and approval commands, read own results.
	Analyst bool
	// Reviewer: query the audit trail through the engine.
	Reviewer bool
}

// Permissions returns what id may publish and subscribe to on tenant's
// subjects; nil for an engine (no limit). Everything not allowed is denied;
// the explicit denies only make the intent plain in a server's account dump.
func Permissions(tenant string, id Identity) *server.Permissions {
	if id.Engine {
		return nil
	}
	var pub, sub []string
	if id.Analyst {
		pub = append(pub, ActionsFilter(tenant), ApprovalSubject(tenant))
		sub = append(sub, ResultsFilterFor(tenant, id.PublicKey))
	}
	if id.Analyst || id.Reviewer {
		pub = append(pub, AuditQuerySubject(tenant))
		sub = append(sub, InboxPrefix(id.PublicKey)+".>")
	}
	deny := []string{"$JS.>", "$KV.>", "$O.>", "$SYS.>", "m365.>", "responder.*.audit.>", "_INBOX.>"}
	subDeny := append(slices.Clone(deny), "responder.*.action.>", "responder.*.approval", "responder.*.query.>")
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: nonNil(pub), Deny: deny},
		Subscribe: &server.SubjectPermission{Allow: nonNil(sub), Deny: subDeny},
	}
}

// nonNil keeps an empty allow list an allow list: a nil one means "anything".
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// NkeyUsers turns identities into the embedded server's users. A key listed
// more than once gets the union of its rights.
func NkeyUsers(tenant string, ids []Identity) []*server.NkeyUser {
	merged := map[string]Identity{}
	var order []string
	for _, id := range ids {
		m, ok := merged[id.PublicKey]
		if !ok {
			order = append(order, id.PublicKey)
		}
		m.PublicKey = id.PublicKey
		m.Engine = m.Engine || id.Engine
		m.Analyst = m.Analyst || id.Analyst
		m.Reviewer = m.Reviewer || id.Reviewer
		merged[id.PublicKey] = m
	}
	users := make([]*server.NkeyUser, 0, len(order))
	for _, k := range order {
		users = append(users, &server.NkeyUser{Nkey: k, Permissions: Permissions(tenant, merged[k])})
	}
	return users
}

// ClientAuth is how a client proves who it is to NATS, and the TLS it speaks.
// At most one of Key, NkeyFile and CredsFile.
type ClientAuth struct {
	// Key authenticates with an nkey held in memory (the engine key, an
	// analyst's key read from its file).
	Key nkeys.KeyPair
	// NkeyFile is a file holding an nkey seed (what `nats --nkey` takes).
	NkeyFile string
	// CredsFile is a NATS credentials file (JWT and seed; operator mode).
	CredsFile string
	// TLSCert and TLSKey are a client certificate (mutual TLS); TLSCA is the
	// CA bundle that signed the server's certificate.
	TLSCert, TLSKey, TLSCA string
	// InboxPrefix overrides the inbox prefix; empty: InboxPrefix of the key
	// (Key or NkeyFile), or the NATS default with a creds file.
	InboxPrefix string
}

// Options returns the nats.go options for a; the flag or variable named in
// errors is the CLI's (RESPONDER_NATS_*).
func (a ClientAuth) Options() ([]nats.Option, error) {
	n := 0
	for _, set := range []bool{a.Key != nil, a.NkeyFile != "", a.CredsFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("bus: more than one NATS identity (key, --nats-nkey, --nats-creds): choose one")
	}
	var opts []nats.Option
	prefix := a.InboxPrefix
	switch {
	case a.Key != nil:
		pub, err := a.Key.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("bus: nkey: %w", err)
		}
		opts = append(opts, nats.Nkey(pub, NonceSigner(a.Key)))
		if prefix == "" {
			prefix = InboxPrefix(pub)
		}
	case a.NkeyFile != "":
		kp, err := readSeedFile(a.NkeyFile)
		if err != nil {
			return nil, err
		}
		pub, _ := kp.PublicKey()
		opts = append(opts, nats.Nkey(pub, NonceSigner(kp)))
		if prefix == "" {
			prefix = InboxPrefix(pub)
		}
	case a.CredsFile != "":
		if _, err := os.Stat(a.CredsFile); err != nil {
			return nil, fmt.Errorf("bus: NATS credentials (--nats-creds, RESPONDER_NATS_CREDS): %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, errors.New("bus: a NATS client certificate needs both --nats-tls-cert and --nats-tls-key (RESPONDER_NATS_TLS_CERT, RESPONDER_NATS_TLS_KEY)")
	}
	if a.TLSCert != "" {
		if err := privateFile(a.TLSKey); err != nil {
			return nil, fmt.Errorf("bus: NATS client key (--nats-tls-key, RESPONDER_NATS_TLS_KEY): %w", err)
		}
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	return opts, nil
}

// readSeedFile reads an nkey seed file (plain seed, or decorated as nsc writes
// it), refusing one that others may read.
func readSeedFile(path string) (nkeys.KeyPair, error) {
	if err := privateFile(path); err != nil {
		return nil, fmt.Errorf("bus: NATS nkey (--nats-nkey, RESPONDER_NATS_NKEY): %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bus: NATS nkey (--nats-nkey, RESPONDER_NATS_NKEY): %w", err)
	}
	defer clear(b)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		kp, err = nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	}
	if err != nil {
		return nil, fmt.Errorf("bus: NATS nkey file %s does not hold an nkey seed", path)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("bus: NATS nkey file %s holds a public key, not a seed", path)
	}
	return kp, nil
}

// privateFile refuses a secret file that group or others may read (as ssh
// does with keys).
func privateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}

// maxNonce bounds what NonceSigner signs. NATS servers send an 11-byte random
// nonce, base64url encoded without padding (server/auth.go, nonceLen; the
// INFO "nonce" field): 15 characters.
const maxNonce = 64

// NonceSigner signs the nonce a NATS server sends at connect, and nothing else.
// The same key signs action requests; a request's signed bytes start with
// "responder-signed-message-v1\n", which this refuses (a newline and '-' in
// the first token are never in a base64url nonce), so a rogue server cannot
// make a client sign a request by passing it off as a nonce.
func NonceSigner(kp nkeys.KeyPair) nats.SignatureHandler {
	return func(nonce []byte) ([]byte, error) {
		if !plausibleNonce(nonce) {
			return nil, errors.New("bus: refusing to sign a server nonce that is not a short base64url string")
		}
		return kp.Sign(nonce)
	}
}

func plausibleNonce(b []byte) bool {
	if len(b) == 0 || len(b) > maxNonce {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
		default:
			return false
		}
	}
	return true
}

// IsLoopback reports whether host (a name or an address, no port) stays on
// this machine. An empty host (all interfaces) is not loopback.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ServerTLS is the embedded server's certificate, required when it listens
// beyond loopback. With CAFile set, clients must present a certificate that CA
// signed (mutual TLS) besides their nkey.
type ServerTLS struct {
	CertFile, KeyFile, CAFile string
}

func (t ServerTLS) config() (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, nil
	}
	if err := privateFile(t.KeyFile); err != nil {
		return nil, fmt.Errorf("bus: NATS server key (--nats-listen-tls-key): %w", err)
	}
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.CAFile != ""})
	if err != nil {
		return nil, fmt.Errorf("bus: NATS server TLS: %w", err)
	}
	return cfg, nil
}
