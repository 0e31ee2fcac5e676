package m365sim

import "net/http"

// Licence is the tenant's Microsoft Entra ID edition, which decides which
// reports and Identity Protection APIs answer:
//
//   - riskyUsers (list, get, confirmCompromised, dismiss): "Using the
//     riskyUsers API requires a Microsoft Entra ID P2 license"
//     (https://learn.microsoft.com/graph/api/riskyuser-get,
//     https://learn.microsoft.com/graph/api/riskyuser-list);
//   - riskDetections: "You must have a Microsoft Entra ID P1 or P2 license to
//     use the risk detection API" (https://learn.microsoft.com/graph/api/riskdetection-list);
//     a P1 tenant gets limited information, which the emulator does not model;
//   - auditLogs/signIns: P1 or P2 (signins.go).
//
// A tenant without the licence answers HTTP 403 with code
// Authentication_RequestFromNonPremiumTenantOrB2CTenant. Microsoft has worded
// the message two ways: "Neither tenant is B2C or tenant doesn't have premium
// license" (older captures: microsoftgraph/msgraph-sdk-dotnet#1006,
// turbot/steampipe-plugin-azuread#98, MicrosoftDocs/SupportArticles-docs
// "b2c-or-tenant-premium-license-sign-in-activities") and, in current
// captures, "Tenant is not a B2C tenant and doesn't have premium license";
// the Identity Protection routes answer the current wording.
type Licence int

const (
	// LicenceP2 is Microsoft Entra ID P2 (the default): every API answers.
	LicenceP2 Licence = iota
	// LicenceP1 is Microsoft Entra ID P1: sign-ins and risk detections
	// answer, riskyUsers answers 403.
	LicenceP1
	// LicenceFree is Microsoft Entra ID Free (Microsoft 365 alone): sign-ins,
	// risk detections and risky users answer 403.
	LicenceFree
)

const msgNoPremiumIdP = "Tenant is not a B2C tenant and doesn't have premium license"

// SetLicence sets the tenant's Entra ID edition (see Licence).
func (t *Tenant) SetLicence(l Licence) {
	t.mu.Lock()
	t.applyLicenceLocked(l)
	t.mu.Unlock()
}

func (t *Tenant) applyLicenceLocked(l Licence) {
	t.noPremium = l == LicenceFree
	t.noP2 = l != LicenceP2
}

// needsLicence wraps an Identity Protection handler: a tenant below the
// edition answers 403 before anything else is read.
func needsLicence(l Licence, h func(t *Tenant, r *req, p []string) *resp) func(t *Tenant, r *req, p []string) *resp {
	return func(t *Tenant, r *req, p []string) *resp {
		t.mu.Lock()
		missing := t.noPremium || (l == LicenceP2 && t.noP2)
		t.mu.Unlock()
		if missing {
			return t.graphError(r, http.StatusForbidden, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", msgNoPremiumIdP)
		}
		return h(t, r, p)
	}
}
