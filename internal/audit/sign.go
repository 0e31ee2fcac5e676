package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
)

// Why every record is signed, rather than a checkpoint every N records: a
// checkpoint leaves the records after the last one unsigned, and those are
// exactly the records an attacker appends (a forged "succeeded" for an action that
// never ran, or a "denied" covering one that did); with several engines writing one
// chain, checkpoints also need an owner. An Ed25519 signature over the record hash
// costs tens of microseconds, against the milliseconds of the JetStream append it
// rides on (docs/performance.md, `responder bench bus`), so the whole trail is
// attributable record by record.

// Signing domains: an engine key signs other things too (relayed requests), so
// each signed byte string starts with what it is.
const (
	recordSigDomain = "responder.audit.record.v1\n"
	headSigDomain   = "responder.audit.head.v1\n"
)

// Signer is an engine key: nkeys.KeyPair satisfies it.
type Signer interface {
	PublicKey() (string, error)
	Sign(input []byte) ([]byte, error)
}

// cachedSigner signs with the Ed25519 key derived once: nkeys derives it from
// the seed on every Sign, which doubles the cost of a signature.
type cachedSigner struct {
	pub  string
	priv ed25519.PrivateKey
}

func (c *cachedSigner) PublicKey() (string, error) { return c.pub, nil }

func (c *cachedSigner) Sign(input []byte) ([]byte, error) { return ed25519.Sign(c.priv, input), nil }

// fastSigner returns s with its private key derived once when s is an nkeys
// user key pair, else s itself.
func fastSigner(s Signer) Signer {
	kp, ok := s.(nkeys.KeyPair)
	if !ok {
		return s
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return s
	}
	seed, err := kp.Seed()
	if err != nil {
		return s
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || len(raw) != ed25519.SeedSize {
		return s
	}
	return &cachedSigner{pub: pub, priv: ed25519.NewKeyFromSeed(raw)}
}

// ErrUntrusted: a record or head carries no signature, or one that does not
// verify under a trusted engine key.
var ErrUntrusted = errors.New("audit: not signed by a trusted engine key")

// Trusted is the set of engine public keys (nkeys user keys, "U…") whose
// signatures a verify accepts: the engine key of the data directory, and in a
// cluster every key listed as an engine in the analysts file.
type Trusted struct{ keys []string }

// NewTrusted returns the set of keys, each checked to be a public user nkey.
func NewTrusted(keys ...string) (Trusted, error) {
	var t Trusted
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if !nkeys.IsValidPublicUserKey(k) {
			return Trusted{}, fmt.Errorf("audit: trusted engine key %q is not a public user nkey", shortKey(k))
		}
		if !slices.Contains(t.keys, k) {
			t.keys = append(t.keys, k)
		}
	}
	slices.Sort(t.keys)
	return t, nil
}

// Empty reports whether no key is trusted.
func (t Trusted) Empty() bool { return len(t.keys) == 0 }

// Keys lists the trusted keys, sorted.
func (t Trusted) Keys() []string { return slices.Clone(t.keys) }

func (t Trusted) has(k string) bool {
	_, ok := slices.BinarySearch(t.keys, k)
	return ok
}

// verify checks sig (base64url) over domain+msg under signer, which must be trusted.
func (t Trusted) verify(signer, sig, domain, msg string) error {
	switch {
	case signer == "" && sig == "":
		return fmt.Errorf("%w: no signature", ErrUntrusted)
	case signer == "" || sig == "":
		return fmt.Errorf("%w: signer or signature missing", ErrUntrusted)
	case !t.has(signer):
		return fmt.Errorf("%w: signed by %s, which is not a trusted engine key", ErrUntrusted, shortKey(signer))
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: the signature is not base64url", ErrUntrusted)
	}
	pk, err := nkeys.FromPublicKey(signer)
	if err != nil {
		return fmt.Errorf("%w: signer %s: %v", ErrUntrusted, shortKey(signer), err)
	}
	if err := pk.Verify([]byte(domain+msg), raw); err != nil {
		return fmt.Errorf("%w: the signature of %s does not verify", ErrUntrusted, shortKey(signer))
	}
	return nil
}

// VerifyRecord checks r's signature (its own hash is checked by the chain check).
func (t Trusted) VerifyRecord(r Record) error {
	return t.verify(r.Signer, r.Sig, recordSigDomain, r.Hash)
}

// signRecord signs r.Hash, which must already cover r.Signer.
func signRecord(s Signer, r *Record) error {
	sig, err := s.Sign([]byte(recordSigDomain + r.Hash))
	if err != nil {
		return fmt.Errorf("audit: sign record %s: %w", r.ID, err)
	}
	r.Sig = base64.RawURLEncoding.EncodeToString(sig)
	return nil
}

func shortKey(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return k
}
