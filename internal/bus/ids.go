package bus

import (
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Deterministic ids. Everything Responder derives from something it already
// knows (a request from an event and a playbook, an audit record from a request
// and its state) gets a name-based UUID (version 5, SHA-1, RFC 9562 §5.5) of
// "responder/<part>/<part>..." in the OID namespace, so that work done twice
// after a crash produces the same id and the stream's duplicate window or the
// KV claim stores it once. The scheme is fixed: changing it would give every
// in-flight request a second id.

// DerivedID is the version 5 UUID of "responder/" + the parts joined by "/".
func DerivedID(parts ...string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("responder/"+strings.Join(parts, "/"))).String()
}

// RecordID is the id of the audit record of request requestID in state what
// ("accepted", "final", "pending", "matched", "guard", ...).
func RecordID(requestID, what string) string { return DerivedID(requestID, what) }

// PlaybookRequestID is the id of the first request a playbook makes for an
// event.
func PlaybookRequestID(eventID, playbook string) string {
	return DerivedID("event", eventID, "playbook", playbook)
}

// NextStepID is the id of the request for the step after request requestID.
func NextStepID(requestID string) string { return DerivedID(requestID, "next") }

// InverseRequestID is the id of the request that undoes what request
// undoRequestID asked to undo.
func InverseRequestID(undoRequestID string) string { return DerivedID(undoRequestID, "inverse") }

// ExpiryRequestID is the id of the request that ends (undoes) the expiring
// action of request requestID.
func ExpiryRequestID(requestID string) string { return DerivedID(requestID, "expiry") }

// RejectedEventID is the id of the audit record of an EVENTS message refused
// at stream sequence seq.
func RejectedEventID(seq uint64) string {
	return DerivedID("event-msg", strconv.FormatUint(seq, 10), "rejected")
}

// RejectedActionID is the id of the audit record of an ACTIONS message refused
// at stream sequence seq.
func RejectedActionID(seq uint64) string {
	return RecordID("msg-"+strconv.FormatUint(seq, 10), "rejected")
}
