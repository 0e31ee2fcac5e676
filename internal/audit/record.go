package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Outcome is the state a record documents. One record per state change.
type Outcome string

// The outcomes of the audit contract (see design.md).
const (
	Accepted        Outcome = "accepted"
	Succeeded       Outcome = "succeeded"
	Failed          Outcome = "failed"
	Skipped         Outcome = "skipped"
	DryRun          Outcome = "dry_run"
	PendingApproval Outcome = "pending_approval"
	Approved        Outcome = "approved"
	Denied          Outcome = "denied"
	Refused         Outcome = "refused"  // a guard said no (protected identity, blast radius)
	Rejected        Outcome = "rejected" // the request itself was invalid or unauthorised
	Matched         Outcome = "matched"  // a playbook fired on an event and requested actions
	Expired         Outcome = "expired"
)

// Final reports whether no further record will follow for the same request.
func (o Outcome) Final() bool {
	switch o {
	case Succeeded, Failed, Skipped, DryRun, Denied, Refused, Rejected, Expired:
		return true
	}
	return false
}

// Actor is who asked for something: a playbook, an analyst, or the engine itself.
type Actor struct {
	Kind  string `json:"kind"` // playbook | analyst | engine
	Name  string `json:"name"`
	KeyID string `json:"key_id,omitempty"`
	// A person signed in to the console with Entra ID (KeyID is then the
	// console's key, which vouches for them): their object id, UPN, the ID
	// token's identifier (uti, else jti) as evidence of the sign-in, and the
	// group ids from the token that grant them their role in the analysts
	// file. Empty for everyone else (the struct stays comparable), so older records hash as before.
	EntraOID string `json:"entra_oid,omitempty"`
	UPN      string `json:"upn,omitempty"`
	TokenID  string `json:"token_id,omitempty"`
	Groups   string `json:"groups,omitempty"` // space-separated object ids
}

// Record is one entry of the audit trail. Field order is the canonical order: the
// hash covers the JSON encoding of the record with Hash and Sig empty, and that
// encoding includes PrevHash and Signer, so each record commits to the whole chain
// before it and to the engine that wrote it.
type Record struct {
	ID              string            `json:"id"`
	Seq             uint64            `json:"seq"`
	Time            time.Time         `json:"time"`
	TenantID        string            `json:"tenant_id"`
	RequestID       string            `json:"request_id,omitempty"`
	Action          string            `json:"action,omitempty"`
	Target          map[string]string `json:"target,omitempty"`
	Actor           Actor             `json:"actor"`
	Outcome         Outcome           `json:"outcome"`
	Detail          string            `json:"detail,omitempty"`
	ErrorCode       string            `json:"error_code,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Ticket          string            `json:"ticket,omitempty"`
	EventID         string            `json:"event_id,omitempty"`
	Playbook        string            `json:"playbook,omitempty"`
	DryRun          bool              `json:"dry_run,omitempty"`
	Before          json.RawMessage   `json:"before,omitempty"`
	After           json.RawMessage   `json:"after,omitempty"`
	Attempts        int               `json:"attempts,omitempty"`
	GraphRequestIDs []string          `json:"graph_request_ids,omitempty"`
	PrevHash        string            `json:"prev_hash"`
	Hash            string            `json:"hash"`
	// Signer is the public nkey of the engine that appended the record, and Sig
	// its Ed25519 signature over Hash (see SignRecord). Signer is covered by the
	// hash; Sig is not (it signs the hash). Both are empty on a record appended
	// without a key (by a tool or a test writer, or before records were signed):
	// a verify that trusts engine keys fails such a record.
	Signer string `json:"signer,omitempty"`
	Sig    string `json:"sig,omitempty"`
}

// Canonical is the byte string the hash covers: the JSON encoding of r with Hash
// and Sig cleared. encoding/json writes struct fields in declaration order and map keys
// sorted, and compacts raw fields, so the encoding is stable across a round trip.
func (r Record) Canonical() ([]byte, error) {
	r.Hash, r.Sig = "", ""
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit: canonical form of record %s: %w", r.ID, err)
	}
	return b, nil
}

// ComputeHash returns the hex SHA-256 of the canonical form.
func (r Record) ComputeHash() (string, error) {
	b, err := r.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
