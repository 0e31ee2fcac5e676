package event

import "strings"

// RevisionMark separates a record's id from the fingerprint of a later version
// of it in an envelope id: a Graph sign-in that Entra completes after it first
// appeared (MFA details, for up to two hours) is published again as
// "<id>:rev-<fingerprint>" (internal/feeds).
const RevisionMark = ":rev-"

// RecordID is the id of the record an envelope id names, without the revision
// mark of a later version; other ids are returned unchanged. Counting by it
// counts a record once, whichever of its versions arrives.
func RecordID(envelopeID string) string {
	if i := strings.LastIndex(envelopeID, RevisionMark); i > 0 {
		return envelopeID[:i]
	}
	return envelopeID
}
