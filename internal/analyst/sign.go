package analyst

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/bus"
)

// The signature envelope.
const (
	// HeaderSignature carries the Ed25519 signature, base64url without padding.
	HeaderSignature = "Responder-Signature"
	// HeaderKey carries the signer's public nkey (U…). When absent, the signer
	// is requested_by.key_id of the body.
	HeaderKey = "Responder-Key"
	// SigningPrefix is prepended to the canonical form before signing, so a
	// signature over a request can never be mistaken for a signature over
	// anything else the same key signs (a NATS server nonce, say).
	SigningPrefix = "responder-signed-message-v1\n"
)

// Signed is a body ready to publish with the headers that carry its signature.
type Signed struct {
	Body   []byte
	Header nats.Header
}

// Msg returns the NATS message for subject.
func (s Signed) Msg(subject string) *nats.Msg {
	h := nats.Header{}
	for k, v := range s.Header {
		h[k] = append([]string(nil), v...)
	}
	return &nats.Msg{Subject: subject, Data: s.Body, Header: h}
}

// SigningInput returns the bytes a signature covers: SigningPrefix followed by
// the canonical form of body.
func SigningInput(body []byte) ([]byte, error) {
	c, err := Canonical(body)
	if err != nil {
		return nil, err
	}
	return append([]byte(SigningPrefix), c...), nil
}

// SignBody signs a JSON object with kp and returns the envelope headers.
func SignBody(body []byte, kp nkeys.KeyPair) (nats.Header, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("analyst: signing key: %w", err)
	}
	in, err := SigningInput(body)
	if err != nil {
		return nil, err
	}
	sig, err := kp.Sign(in)
	if err != nil {
		return nil, fmt.Errorf("analyst: sign: %w", err)
	}
	h := nats.Header{}
	h.Set(HeaderKey, pub)
	h.Set(HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
	return h, nil
}

// Sign sets req.RequestedBy.KeyID to kp's public key, encodes req and signs it.
// Use it for a request the key holder makes: an analyst's request, or a
// playbook's request signed by the engine key.
func Sign(req *actions.Request, kp nkeys.KeyPair) (Signed, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return Signed{}, fmt.Errorf("analyst: signing key: %w", err)
	}
	req.RequestedBy.KeyID = pub
	return Relay(req, kp)
}

// Relay encodes and signs req without changing requested_by: an engine key
// vouching for a request it forwards on someone's behalf (the follow-up steps of
// a run, say). The Verifier accepts a signer other than requested_by.key_id only
// when the signer is an engine key.
func Relay(req *actions.Request, kp nkeys.KeyPair) (Signed, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Signed{}, fmt.Errorf("analyst: encode request %s: %w", req.ID, err)
	}
	h, err := SignBody(body, kp)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Body: body, Header: h}, nil
}

// Publish signs req with kp (see Sign) and publishes it to the tenant's action
// subject, deduplicated by the request id, like actions.Publish.
func Publish(ctx context.Context, js jetstream.Publisher, tenant string, req *actions.Request, kp nkeys.KeyPair) error {
	s, err := Sign(req, kp)
	if err != nil {
		return err
	}
	return PublishSigned(ctx, js, tenant, req, s)
}

// PublishSigned publishes an already signed request, re-sending it while a
// cluster fails over (bus.PublishOnce).
func PublishSigned(ctx context.Context, js jetstream.Publisher, tenant string, req *actions.Request, s Signed) error {
	m := s.Msg(bus.ActionSubject(tenant, string(req.Action)))
	// Sent again through a cluster's failover (a few seconds without a
	// stream leader): the request id deduplicates the repeats.
	if _, err := bus.PublishOnce(ctx, js, m, req.ID, 0); err != nil {
		return fmt.Errorf("analyst: publish request %s: %w", req.ID, err)
	}
	return nil
}

// envelope is what a message says about its own signature.
type envelope struct {
	key string // signer public key ("" when unnamed)
	sig string // base64url signature ("" when unsigned)
}

// readEnvelope takes the signature from the headers, or else from a top-level
// "signature" member of the body (for clients that cannot set headers).
func readEnvelope(body []byte, hdr nats.Header) (envelope, error) {
	e := envelope{key: hdr.Get(HeaderKey), sig: hdr.Get(HeaderSignature)}
	if e.sig != "" {
		return e, nil
	}
	var inBody struct {
		Signature *string `json:"signature"`
	}
	if err := json.Unmarshal(body, &inBody); err != nil {
		return e, errors.New("body is not a JSON object")
	}
	if inBody.Signature != nil {
		e.sig = *inBody.Signature
	}
	return e, nil
}

// verifySignature checks sig over body under the public key pub.
func verifySignature(body []byte, pub, sig string) error {
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("key %q is not a public user nkey", short(pub))
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		// Be lenient about padding and the standard alphabet.
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return errors.New("signature is not base64url")
		}
	}
	in, err := SigningInput(body)
	if err != nil {
		return err
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("key %q: %w", short(pub), err)
	}
	if err := kp.Verify(in, raw); err != nil {
		return errors.New("signature does not verify")
	}
	return nil
}

// short abbreviates a public key or id for messages.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
