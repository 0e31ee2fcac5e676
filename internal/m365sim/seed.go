package m365sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

func (t *Tenant) seed(s Seed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case SeedSmall:
		t.seedSmallLocked()
	case SeedOrg:
		t.seedOrgLocked()
	}
}

// Well-known ids of the SeedSmall users, so tests can address them.
const (
	AliceID      = "a11ce000-0000-4000-8000-000000000001"
	BobID        = "b0b00000-0000-4000-8000-000000000002"
	CarolID      = "ca201000-0000-4000-8000-000000000003"
	BreakGlassID = "b4ea6000-0000-4000-8000-0000000000ff"
)

func (t *Tenant) seedSmallLocked() {
	t.addDomainLocked("contoso.com", true)
	t.addDomainLocked("contoso.onmicrosoft.com", false)
	t.addUserLocked(User{ID: AliceID, UserPrincipalName: "alice@contoso.com", DisplayName: "Alice Adams", GivenName: "Alice", Surname: "Adams", JobTitle: "Finance Manager", Department: "Finance", UsageLocation: "US"})
	t.addUserLocked(User{ID: BobID, UserPrincipalName: "bob@contoso.com", DisplayName: "Bob Brown", GivenName: "Bob", Surname: "Brown", JobTitle: "Engineer", Department: "Engineering", UsageLocation: "US"})
	t.addUserLocked(User{ID: CarolID, UserPrincipalName: "carol@contoso.com", DisplayName: "Carol Clark", GivenName: "Carol", Surname: "Clark", JobTitle: "IT Administrator", Department: "IT", UsageLocation: "GB"})
	t.addUserLocked(User{ID: BreakGlassID, UserPrincipalName: "breakglass@contoso.com", DisplayName: "Break Glass (emergency access)", NoMailbox: true})
	_ = t.addRoleMemberLocked("Global Administrator", CarolID)
	_ = t.addRoleMemberLocked("Global Administrator", BreakGlassID)
}

var (
	orgFirst = []string{"Dana", "Erik", "Farah", "Gus", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco", "Nina", "Omar", "Priya",
		"Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Xavier", "Yara", "Zoe", "Liam", "Mia", "Noah", "Olivia", "Pedro"}
	orgLast = []string{"Diaz", "Eriksen", "Farouk", "Green", "Hayashi", "Ivanov", "Jensen", "Mensah", "Larsen", "Rossi", "Novak", "Haddad",
		"Patel", "Quigley", "Romero", "Smith", "Aziz", "Uddin", "Volkov", "Wang", "Xu", "Yilmaz", "Zimmer", "Murphy", "Moreau", "Nakamura", "Okafor", "Pereira"}
	orgDepts  = []string{"Finance", "Sales", "Engineering", "HR", "Legal", "Marketing", "Operations", "IT"}
	orgCities = []struct{ city, state, country, ipPrefix string }{
		{"Seattle", "Washington", "US", "198.51.100."}, {"London", "England", "GB", "198.51.100."}, {"Berlin", "Berlin", "DE", "198.51.100."},
	}
)

// seedOrgLocked builds the `responder sim` organisation: SeedSmall plus a few
// dozen users, admins in privileged roles, mailboxes with messages and rules,
// Conditional Access objects and a day of background activity in every feed.
func (t *Tenant) seedOrgLocked() {
	t.seedSmallLocked()
	t.addDomainLocked("contoso-ltd.com", false)
	rng := rand.New(rand.NewPCG(42, 365))
	now := t.now()
	var ids []string
	for i, fn := range orgFirst {
		ln := orgLast[i%len(orgLast)]
		dept := orgDepts[i%len(orgDepts)]
		u := t.addUserLocked(User{UserPrincipalName: strings.ToLower(fn+"."+ln) + "@contoso.com", DisplayName: fn + " " + ln,
			GivenName: fn, Surname: ln, Department: dept, JobTitle: dept + " Specialist", UsageLocation: orgCities[i%3].country,
			OfficeLocation: orgCities[i%3].city})
		ids = append(ids, u.ID)
	}
	ids = append(ids, AliceID, BobID, CarolID)
	_ = t.addRoleMemberLocked("Global Administrator", ids[0])
	_ = t.addRoleMemberLocked("Security Administrator", ids[1])
	_ = t.addRoleMemberLocked("Security Reader", ids[2])
	_ = t.addRoleMemberLocked("Exchange Administrator", ids[3])
	_ = t.addRoleMemberLocked("User Administrator", ids[4])
	_ = t.addRoleMemberLocked("Helpdesk Administrator", ids[5])
	t.addUserLocked(User{UserPrincipalName: "svc-backup@contoso.com", DisplayName: "Backup service account", NoMailbox: true})
	t.addUserLocked(User{UserPrincipalName: "former.employee@contoso.com", DisplayName: "Former Employee", Disabled: true})

	// Mail: a few ordinary messages per mailbox and some benign rules.
	senders := []string{"newsletter@fabrikam.com", "it-helpdesk@contoso.com", "invoices@northwindtraders.com", "hr@contoso.com"}
	subjects := []string{"Weekly update", "Your ticket has been resolved", "Invoice INV-%d", "Benefits enrolment reminder", "Let's meet for lunch?"}
	for _, id := range ids {
		u := t.st.users[id]
		for k := 0; k < 5; k++ {
			subj := subjects[rng.IntN(len(subjects))]
			if strings.Contains(subj, "%d") {
				subj = fmt.Sprintf(subj, 1000+rng.IntN(9000))
			}
			t.newMessageLocked(u, Message{Subject: subj, FromAddress: senders[rng.IntN(len(senders))], Body: "Hello, please see below.",
				ReceivedDateTime: now.Add(-time.Duration(rng.IntN(24*60)) * time.Minute), IsRead: rng.IntN(2) == 0}, time.Time{})
		}
		if rng.IntN(3) == 0 {
			t.addRuleLocked(u, map[string]any{"displayName": "Newsletters", "sequence": 1, "isEnabled": true,
				"conditions": map[string]any{"senderContains": []string{"newsletter"}},
				"actions":    map[string]any{"moveToFolder": folderID("archive"), "stopProcessingRules": true}})
		}
	}

	// Conditional Access.
	hq := map[string]any{"@odata.type": ipNamedLocationType, "id": newGUID(), "displayName": "Contoso HQ", "isTrusted": true,
		"createdDateTime": graphTime(now.Add(-300 * 24 * time.Hour)), "modifiedDateTime": graphTime(now.Add(-30 * 24 * time.Hour)),
		"ipRanges": []any{map[string]any{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "198.51.100.0/24"}}}
	t.st.namedLocations = append(t.st.namedLocations, hq)
	t.st.policies = append(t.st.policies, map[string]any{"id": newGUID(), "displayName": "Require MFA for administrators",
		"createdDateTime": graphTime(now.Add(-200 * 24 * time.Hour)), "modifiedDateTime": nil, "state": "enabled",
		"conditions": map[string]any{"clientAppTypes": []string{"all"}, "applications": map[string]any{"includeApplications": []string{"All"}},
			"users": map[string]any{"includeRoles": []string{roleTemplates["Global Administrator"]}, "excludeUsers": []string{BreakGlassID}}},
		"grantControls": map[string]any{"operator": "OR", "builtInControls": []string{"mfa"}}})

	// A day of background activity, in hourly blobs per content type, read by
	// subscriptions started before it (Microsoft lists no content from before
	// a start: manage_subs.go).
	t.subscribedSinceLocked(now.Add(-25*time.Hour), contentTypes...)
	for h := 24; h >= 1; h-- {
		hour := now.Add(-time.Duration(h) * time.Hour)
		avail := hour.Add(55 * time.Minute)
		for k := 0; k < 6; k++ {
			u := t.st.users[ids[rng.IntN(len(ids))]]
			c := orgCities[rng.IntN(len(orgCities))]
			code := 0
			if rng.IntN(12) == 0 {
				code = 50126
			}
			t.injectSignInLocked(SignIn{UserID: u.ID, IPAddress: fmt.Sprintf("%s%d", c.ipPrefix, 10+rng.IntN(200)), City: c.city,
				State: c.state, CountryOrRegion: c.country, ErrorCode: code,
				CreatedDateTime: hour.Add(time.Duration(rng.IntN(3600)) * time.Second)}, avail)
		}
		var exch, sp, gen, dlp []map[string]any
		for k := 0; k < 4; k++ {
			u := t.st.users[ids[rng.IntN(len(ids))]]
			at := hour.Add(time.Duration(rng.IntN(3600)) * time.Second)
			r := t.baseRecord(at, 2, "MailItemsAccessed", u.UserPrincipalName, "Exchange", "Succeeded")
			r["ClientIP"] = withPort(fmt.Sprintf("198.51.100.%d", 10+rng.IntN(200)))
			r["LogonType"] = 0
			r["MailboxOwnerUPN"] = u.UserPrincipalName
			r["MailboxGuid"] = u.ID
			r["OperationProperties"] = []any{map[string]any{"Name": "MailAccessType", "Value": "Bind"}}
			exch = append(exch, r)
			f := t.baseRecord(at, 6, "FileAccessed", u.UserPrincipalName, "OneDrive", "Succeeded")
			f["ClientIP"] = fmt.Sprintf("198.51.100.%d", 10+rng.IntN(200))
			f["ObjectId"] = "https://contoso-my.sharepoint.com/personal/" + strings.ReplaceAll(strings.ReplaceAll(u.UserPrincipalName, "@", "_"), ".", "_") + "/Documents/report.xlsx"
			f["SourceFileName"] = "report.xlsx"
			sp = append(sp, f)
			g := t.baseRecord(at, 25, "MessageSent", u.UserPrincipalName, "MicrosoftTeams", "Succeeded")
			gen = append(gen, g)
		}
		if h%6 == 0 {
			u := t.st.users[ids[rng.IntN(len(ids))]]
			d := t.baseRecord(hour, 13, "DlpRuleMatch", u.UserPrincipalName, "Exchange", "Succeeded")
			d["PolicyDetails"] = []any{map[string]any{"PolicyName": "U.S. Financial Data", "Rules": []any{map[string]any{"RuleName": "Credit card numbers", "Severity": "Low"}}}}
			dlp = append(dlp, d)
			t.addRecordsLocked("DLP.All", avail, dlp...)
		}
		t.addRecordsLocked("Audit.Exchange", avail, exch...)
		t.addRecordsLocked("Audit.SharePoint", avail, sp...)
		t.addRecordsLocked("Audit.General", avail, gen...)
	}
	// A few risk detections during the day.
	for k, typ := range []string{"unfamiliarFeatures", "anonymizedIPAddress", "unlikelyTravel"} {
		u := t.st.users[ids[(k*7+3)%len(ids)]]
		at := now.Add(-time.Duration(20-6*k) * time.Hour)
		t.injectRiskLocked(RiskDetection{UserID: u.ID, RiskEventType: typ, RiskLevel: []string{"low", "medium", "high"}[k],
			IPAddress: fmt.Sprintf("203.0.113.%d", 20+k), ActivityDateTime: at, DetectedDateTime: at.Add(5 * time.Minute),
			LastUpdatedDateTime: at.Add(10 * time.Minute), CountryOrRegion: "NL", City: "Amsterdam"}, at.Add(10*time.Minute))
	}
}
