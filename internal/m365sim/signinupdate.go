package m365sim

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// Sign-in records change after they first appear: Microsoft Entra keeps
// aggregating MFA details into a sign-in for up to two hours, and a record can
// reach the log minutes late (Microsoft Entra monitoring and health FAQ,
// https://learn.microsoft.com/entra/identity/monitoring-health/reports-faq;
// the retired reporting-latencies page:
// https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-latencies).
// The emulator keeps each sign-in's versions: listings and GET show the
// newest version visible at the tenant's clock, with the original id and
// createdDateTime.

// UpdateSignIn changes the fields of sign-in id from at on (the current
// version stays listed until then), merging objects one level deep (a
// "status" patch keeps the status fields it does not name).
func (t *Tenant) UpdateSignIn(id string, at time.Time, fields map[string]any) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range t.st.signIns {
		if !strings.EqualFold(str(it.obj, "id"), id) {
			continue
		}
		// The newest version is it itself; older ones hang off prev.
		old := &item{obj: it.obj, visible: it.visible, seq: it.seq, prev: it.prev}
		obj := cloneObj(it.obj)
		for k, v := range fields {
			if sub, ok := v.(map[string]any); ok {
				if cur, ok := obj[k].(map[string]any); ok {
					merged := maps.Clone(cur)
					maps.Copy(merged, sub)
					obj[k] = merged
					continue
				}
			}
			obj[k] = v
		}
		it.obj, it.visible, it.prev = obj, at, old
		return nil
	}
	return fmt.Errorf("m365sim: no sign-in %s", id)
}

// CompleteSignInMFA adds, from at on, the MFA outcome Entra aggregates into a
// sign-in after it first appears, in the v1.0 signIn's own properties
// (https://learn.microsoft.com/graph/api/resources/signin: status
// .additionalDetails, conditionalAccessStatus, appliedConditionalAccessPolicies;
// the beta-only mfaDetail and authenticationDetails are not served on v1.0):
// the second factor completed and the MFA policy satisfied.
func (t *Tenant) CompleteSignInMFA(id string, at time.Time) error {
	return t.UpdateSignIn(id, at, map[string]any{
		"conditionalAccessStatus": "success",
		"status":                  map[string]any{"additionalDetails": "MFA completed in Azure AD"},
		"appliedConditionalAccessPolicies": []any{map[string]any{
			"id": "2b0c6f5e-4c2a-4a77-9d44-6a1c1d7e0a11", "displayName": "Require MFA for all users",
			"enforcedGrantControls": []any{"Mfa"}, "enforcedSessionControls": []any{}, "result": "success",
		}},
	})
}
