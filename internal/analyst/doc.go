// Package analyst owns who may ask Responder to act: analysts' Ed25519 keys
// (NATS nkeys), the signature envelope of action requests, the analysts file
// that maps public keys to names and permissions, the local administrator key
// created on a fresh data directory, and the Verifier that turns a signed
// message into an Analyst or a typed rejection.
//
// # Envelope
//
// A request body is any JSON object (an action request, an approval command).
// Its canonical form is the RFC 8785 (JCS) serialisation of the body with the
// top-level member "signature" removed; the signed bytes are SigningPrefix
// followed by the canonical form; the signature travels in the NATS header
// HeaderSignature (base64url, no padding) and the signer's public key in
// HeaderKey. docs/action-requests.md describes this for clients in any language
// and carries a test vector that TestDocsVector checks.
//
// # Verification
//
// Verifier.Verify checks, in this order: a signature is present (unsigned), it
// verifies under the signer's key (bad_signature), the key is in the Directory
// (unknown_key), the signer may speak for requested_by (unauthorised), the
// request time is within MaxSkew of the time the message was received and its id
// was not used before (replayed), and the analyst may request the action and
// every follow-up step (unauthorised). Seen ids are claimed in a KV bucket with
// a TTL (ReplayBucket); a redelivery of the same stored message (same stream
// sequence) is not a replay.
//
// # Guarantees and limits
//
// The package never logs, returns or records a private key seed: seeds live only
// in key files written 0600 and in nkeys.KeyPair values. It never imports the
// Graph SDK.
package analyst
