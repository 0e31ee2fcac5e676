package feeds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Sign-in records change after they first appear: Entra keeps adding MFA and
// Conditional Access details to a sign-in for up to two hours, and a record
// can reach the log minutes late (Microsoft Entra monitoring and health FAQ,
// https://learn.microsoft.com/entra/identity/monitoring-health/reports-faq).
// The sign-in feed therefore re-scans a trailing window (createdDateTime in
// the last 2h15m, every 15 minutes) and recognises each version by its id and
// a fingerprint of the fields playbooks read: an unchanged record is never
// published twice, a changed one is published once more, as an update whose
// envelope id is "<id>:rev-<fingerprint>" (the first version keeps the bare
// id, so the stream's deduplication of earlier releases still holds).

// signInRevisionFields are the signIn properties (v1.0 and beta) that playbooks
// read and Entra may still fill in after the record first appears.
var signInRevisionFields = []string{
	"status", "conditionalAccessStatus", "appliedConditionalAccessPolicies",
	"authenticationRequirement", "authenticationDetails", "mfaDetail",
	"riskLevelDuringSignIn", "riskLevelAggregated", "riskState", "riskDetail", "riskEventTypes", "riskEventTypes_v2",
	"ipAddress", "userPrincipalName", "appDisplayName",
}

// contentFingerprint digests the named top-level fields of a JSON record,
// canonically (objects' keys sorted, whitespace dropped), so that two reads of
// the same content give the same value whatever the serialisation. A record
// that does not decode gives "".
func contentFingerprint(raw json.RawMessage, fields []string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return ""
	}
	h := sha256.New()
	for _, f := range fields {
		v, ok := top[f]
		if !ok {
			continue
		}
		var val any
		if json.Unmarshal(v, &val) != nil {
			continue
		}
		canon, err := json.Marshal(val)
		if err != nil {
			continue
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(canon)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
