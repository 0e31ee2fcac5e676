package m365sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/auditlogs"
	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
)

func odataCode(t *testing.T, err error, status int, code string) *odataerrors.ODataError {
	t.Helper()
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %T %v, want ODataError %d %s", err, err, status, code)
	}
	if oe.ResponseStatusCode != status || *oe.GetErrorEscaped().GetCode() != code {
		t.Fatalf("error = %d %s (%s), want %d %s", oe.ResponseStatusCode, *oe.GetErrorEscaped().GetCode(), *oe.GetErrorEscaped().GetMessage(), status, code)
	}
	return oe
}

func sp(s string) *string { return &s }

func TestMessageRulesCRUD(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	rules := gc.Users().ByUserId("alice@contoso.com").MailFolders().ByMailFolderId("inbox").MessageRules()

	rule := models.NewMessageRule()
	rule.SetDisplayName(sp("From partner"))
	seq := int32(2)
	rule.SetSequence(&seq)
	acts := models.NewMessageRuleActions()
	rcp := models.NewRecipient()
	ea := models.NewEmailAddress()
	ea.SetAddress(sp("evil@example.net"))
	rcp.SetEmailAddress(ea)
	acts.SetForwardTo([]models.Recipientable{rcp})
	rule.SetActions(acts)
	created, err := rules.Post(ctx, rule, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := *created.GetId()
	if !strings.ContainsAny(id, "=+/") && len(id) < 8 {
		t.Fatalf("rule id %q", id)
	}
	// Attacker rule via injection.
	rid, _, err := tn.InjectForwardingRule(ForwardingRule{User: AliceID, RuleName: "..", ForwardTo: []string{"drop@attacker.example"}, Kind: "RedirectTo"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := rules.Get(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetValue()) != 2 {
		t.Fatalf("rules = %d", len(list.GetValue()))
	}
	var sawRedirect bool
	for _, r := range list.GetValue() {
		if *r.GetId() == rid && len(r.GetActions().GetRedirectTo()) == 1 && *r.GetActions().GetRedirectTo()[0].GetEmailAddress().GetAddress() == "drop@attacker.example" {
			sawRedirect = true
		}
	}
	if !sawRedirect {
		t.Fatal("injected redirect rule not listed")
	}
	upd := models.NewMessageRule()
	f := false
	upd.SetIsEnabled(&f)
	got, err := rules.ByMessageRuleId(id).Patch(ctx, upd, nil)
	if err != nil || *got.GetIsEnabled() {
		t.Fatalf("patch: %v", err)
	}
	if err := rules.ByMessageRuleId(rid).Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	err = rules.ByMessageRuleId(rid).Delete(ctx, nil)
	odataCode(t, err, 404, "ErrorItemNotFound")
	if n := len(tn.MessageRules(AliceID)); n != 1 {
		t.Fatalf("rules left = %d", n)
	}
	// No mailbox.
	_, err = gc.Users().ByUserId("breakglass@contoso.com").MailFolders().ByMailFolderId("inbox").MessageRules().Get(ctx, nil)
	odataCode(t, err, 404, "MailboxNotEnabledForRESTAPI")
	// Missing MailboxSettings permission → Exchange's 403.
	app := tn.AddApp(App{ClientSecret: "x", Roles: []string{"User.Read.All"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, "x"
	_, err = graphClient(t, c).Users().ByUserId(AliceID).MailFolders().ByMailFolderId("inbox").MessageRules().Get(ctx, nil)
	odataCode(t, err, 403, "ErrorAccessDenied")
}

func TestMessagesFilterPagingPurgeMove(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	base := time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)
	ids := map[string]string{}
	for i, s := range []string{"let's meet for lunch?", "Invoice 1", "Invoice 2", "Invoice 3", "hello"} {
		id, err := tn.AddMessage(BobID, Message{Subject: s, FromAddress: fmt.Sprintf("sender%d@fabrikam.com", i%2),
			InternetMessageID: fmt.Sprintf("<m%d@fabrikam.com>", i), ReceivedDateTime: base.Add(time.Duration(i) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		ids[s] = id
	}
	msgs := gc.Users().ByUserId("bob@contoso.com").Messages()
	get := func(filter string, top int32) []models.Messageable {
		t.Helper()
		qp := &users.ItemMessagesRequestBuilderGetQueryParameters{Filter: &filter}
		if top > 0 {
			qp.Top = &top
		}
		res, err := msgs.Get(ctx, &users.ItemMessagesRequestBuilderGetRequestConfiguration{QueryParameters: qp})
		if err != nil {
			t.Fatalf("%s: %v", filter, err)
		}
		it, err := msgraphcore.NewPageIterator[models.Messageable](res, gc.RequestAdapter, models.CreateMessageCollectionResponseFromDiscriminatorValue)
		if err != nil {
			t.Fatal(err)
		}
		var out []models.Messageable
		if err := it.Iterate(ctx, func(m models.Messageable) bool { out = append(out, m); return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := get("subject eq 'let''s meet for lunch?'", 0); len(got) != 1 || *got[0].GetId() != ids["let's meet for lunch?"] {
		t.Fatalf("quote escaping: %d", len(got))
	}
	if got := get("internetMessageId eq '<m2@fabrikam.com>'", 0); len(got) != 1 || *got[0].GetSubject() != "Invoice 2" {
		t.Fatalf("internetMessageId: %d", len(got))
	}
	if got := get("from/emailAddress/address eq 'sender1@fabrikam.com'", 0); len(got) != 2 {
		t.Fatalf("sender: %d", len(got))
	}
	if got := get("receivedDateTime ge 2024-05-01T11:00:00Z and startswith(subject,'Invoice')", 1); len(got) != 2 {
		t.Fatalf("received+subject over $skip pages: %d", len(got))
	}
	// $orderby on a property not first in $filter.
	f, ob := "subject eq 'hello'", []string{"receivedDateTime desc"}
	_, err := msgs.Get(ctx, &users.ItemMessagesRequestBuilderGetRequestConfiguration{QueryParameters: &users.ItemMessagesRequestBuilderGetQueryParameters{Filter: &f, Orderby: ob}})
	odataCode(t, err, 400, "InefficientFilter")

	// Ids with '/', '+', '=' travel percent-encoded and resolve via EscapedPath.
	hello := ids["hello"]
	if !strings.ContainsAny(hello, "/+=") {
		t.Fatalf("id without special characters: %s", hello)
	}
	m, err := msgs.ByMessageId(hello).Get(ctx, nil)
	if err != nil || *m.GetId() != hello {
		t.Fatalf("get by id: %v", err)
	}
	if err := msgs.ByMessageId(hello).PermanentDelete().Post(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := tn.MessageState(BobID, hello); st != "purged" {
		t.Fatalf("state = %s", st)
	}
	_, err = msgs.ByMessageId(hello).Get(ctx, nil)
	odataCode(t, err, 404, "ErrorItemNotFound")

	mv := users.NewItemMessagesItemMovePostRequestBody()
	mv.SetDestinationId(sp("deleteditems"))
	moved, err := msgs.ByMessageId(ids["Invoice 1"]).Move().Post(ctx, mv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *moved.GetId() == ids["Invoice 1"] {
		t.Fatal("moved message kept its id")
	}
	if st, _ := tn.MessageState(BobID, *moved.GetId()); st != "deleteditems" {
		t.Fatalf("moved to %s", st)
	}
	_, err = msgs.ByMessageId("not-an-id").Get(ctx, nil)
	odataCode(t, err, 400, "ErrorInvalidIdMalformed")

	// Phishing to every mailbox.
	got, err := tn.InjectPhishing(Phish{FromAddress: "ceo@c0ntoso.example", Subject: "Urgent wire", Body: "<p>pay</p>"})
	if err != nil || len(got) != 3 {
		t.Fatalf("phish: %v %v", err, got)
	}
	for upn := range got {
		flt := "subject eq 'Urgent wire'"
		r, err := gc.Users().ByUserId(upn).Messages().Get(ctx, &users.ItemMessagesRequestBuilderGetRequestConfiguration{QueryParameters: &users.ItemMessagesRequestBuilderGetQueryParameters{Filter: &flt}})
		if err != nil || len(r.GetValue()) != 1 {
			t.Fatalf("%s: phish not found: %v", upn, err)
		}
	}
}

func TestConditionalAccessLimits(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	nls := gc.Identity().ConditionalAccess().NamedLocations()
	mk := func(cidrs ...string) *models.IpNamedLocation {
		nl := models.NewIpNamedLocation()
		nl.SetOdataType(sp("#microsoft.graph.ipNamedLocation"))
		nl.SetDisplayName(sp("Blocked attackers"))
		var rs []models.IpRangeable
		for _, c := range cidrs {
			if strings.Contains(c, ":") {
				r := models.NewIPv6CidrRange()
				r.SetCidrAddress(sp(c))
				rs = append(rs, r)
			} else {
				r := models.NewIPv4CidrRange()
				r.SetCidrAddress(sp(c))
				rs = append(rs, r)
			}
		}
		nl.SetIpRanges(rs)
		return nl
	}
	created, err := nls.Post(ctx, mk("203.0.113.7/32", "2001:db8::/48"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ip, ok := created.(models.IpNamedLocationable)
	if !ok || len(ip.GetIpRanges()) != 2 {
		t.Fatalf("created %T", created)
	}
	if _, ok := ip.GetIpRanges()[0].(models.IPv4CidrRangeable); !ok {
		t.Fatalf("range type %T", ip.GetIpRanges()[0])
	}
	_, err = nls.Post(ctx, mk("10.0.0.0/8"), nil)
	odataCode(t, err, 400, "BadRequest")
	// Without @odata.type (the SDK's trap).
	bare := models.NewIpNamedLocation()
	bare.SetDisplayName(sp("x"))
	_, err = nls.Post(ctx, bare, nil)
	odataCode(t, err, 400, "BadRequest")
	many := make([]string, 2001)
	for i := range many {
		many[i] = fmt.Sprintf("100.%d.%d.0/24", 64+i/256, i%256)
	}
	_, err = nls.Post(ctx, mk(many...), nil)
	odataCode(t, err, 400, "BadRequest")
	for i := 1; i < maxNamedLocations; i++ {
		if err := tn.AddRawNamedLocation([]byte(`{"@odata.type":"#microsoft.graph.ipNamedLocation","displayName":"n","ipRanges":[]}`)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = nls.Post(ctx, mk("198.51.100.9/32"), nil)
	odataCode(t, err, 400, "BadRequest")

	// Policy referencing the location; a missing location is refused.
	pol := func(loc string) models.ConditionalAccessPolicyable {
		p := models.NewConditionalAccessPolicy()
		p.SetDisplayName(sp("Block attacker IPs"))
		st := models.ENABLED_CONDITIONALACCESSPOLICYSTATE
		p.SetState(&st)
		cond := models.NewConditionalAccessConditionSet()
		apps := models.NewConditionalAccessApplications()
		apps.SetIncludeApplications([]string{"All"})
		cond.SetApplications(apps)
		us := models.NewConditionalAccessUsers()
		us.SetIncludeUsers([]string{"All"})
		us.SetExcludeUsers([]string{BreakGlassID})
		cond.SetUsers(us)
		locs := models.NewConditionalAccessLocations()
		locs.SetIncludeLocations([]string{loc})
		cond.SetLocations(locs)
		p.SetConditions(cond)
		g := models.NewConditionalAccessGrantControls()
		g.SetOperator(sp("OR"))
		g.SetBuiltInControls([]models.ConditionalAccessGrantControl{models.BLOCK_CONDITIONALACCESSGRANTCONTROL})
		p.SetGrantControls(g)
		return p
	}
	pc, err := gc.Identity().ConditionalAccess().Policies().Post(ctx, pol(*created.GetId()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pc.GetState().String() != "enabled" || pc.GetConditions().GetUsers().GetExcludeUsers()[0] != BreakGlassID {
		t.Fatal("policy not round-tripped")
	}
	_, err = gc.Identity().ConditionalAccess().Policies().Post(ctx, pol(newGUID()), nil)
	odataCode(t, err, 400, "BadRequest")
	err = nls.ByNamedLocationId(*created.GetId()).Delete(ctx, nil)
	odataCode(t, err, 400, "BadRequest")
	// Reading without Policy.ReadWrite.ConditionalAccess works; writing does not.
	app := tn.AddApp(App{ClientSecret: "x", Roles: []string{"Policy.Read.All"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, "x"
	g2 := graphClient(t, c)
	if _, err := g2.Identity().ConditionalAccess().NamedLocations().Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_, err = g2.Identity().ConditionalAccess().NamedLocations().Post(ctx, mk("198.51.100.10/32"), nil)
	odataCode(t, err, 403, "AccessDenied")
}

func TestSignInsRiskyUsersActions(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	tn.InjectSignIn(SignIn{UserPrincipalName: "alice@contoso.com", IPAddress: "203.0.113.50", CountryOrRegion: "NG", City: "Lagos", RiskLevelDuringSignIn: "high"})
	tn.InjectSignIn(SignIn{UserPrincipalName: "bob@contoso.com", IPAddress: "198.51.100.20", ErrorCode: 50126})
	f := "userPrincipalName eq 'alice@contoso.com'"
	res, err := gc.AuditLogs().SignIns().Get(ctx, &auditlogs.SignInsRequestBuilderGetRequestConfiguration{QueryParameters: &auditlogs.SignInsRequestBuilderGetQueryParameters{Filter: &f}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetValue()) != 1 {
		t.Fatalf("sign-ins = %d", len(res.GetValue()))
	}
	s := res.GetValue()[0]
	if *s.GetIpAddress() != "203.0.113.50" || s.GetRiskLevelDuringSignIn().String() != "high" || *s.GetStatus().GetErrorCode() != 0 || *s.GetLocation().GetCountryOrRegion() != "NG" {
		t.Fatal("sign-in fields not parsed")
	}
	f = "status/errorCode ne 0"
	res, err = gc.AuditLogs().SignIns().Get(ctx, &auditlogs.SignInsRequestBuilderGetRequestConfiguration{QueryParameters: &auditlogs.SignInsRequestBuilderGetQueryParameters{Filter: &f}})
	if err != nil || len(res.GetValue()) != 1 || *res.GetValue()[0].GetStatus().GetErrorCode() != 50126 {
		t.Fatalf("failed sign-ins: %v", err)
	}
	// The sign-in also produced Management Activity records.
	if n := len(tn.AuditRecords("Audit.AzureActiveDirectory")); n != 2 {
		t.Fatalf("AAD records = %d", n)
	}
	tn.SetPremium(false)
	_, err = gc.AuditLogs().SignIns().Get(ctx, nil)
	odataCode(t, err, 403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant")
	tn.SetPremium(true)
	app := tn.AddApp(App{ClientSecret: "x", Roles: []string{"User.Read.All"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, "x"
	_, err = graphClient(t, c).AuditLogs().SignIns().Get(ctx, nil)
	oe := odataCode(t, err, 403, "Authentication_MSGraphPermissionMissing")
	if !strings.Contains(*oe.GetErrorEscaped().GetMessage(), "AuditLog.Read.All") {
		t.Fatal("permission not named")
	}

	tn.InjectRiskDetection(RiskDetection{UserPrincipalName: "bob@contoso.com", RiskLevel: "low"})
	cc := identityprotection.NewRiskyUsersConfirmCompromisedPostRequestBody()
	cc.SetUserIds([]string{AliceID})
	if err := gc.IdentityProtection().RiskyUsers().ConfirmCompromised().Post(ctx, cc, nil); err != nil {
		t.Fatal(err)
	}
	dm := identityprotection.NewRiskyUsersDismissPostRequestBody()
	dm.SetUserIds([]string{BobID})
	if err := gc.IdentityProtection().RiskyUsers().Dismiss().Post(ctx, dm, nil); err != nil {
		t.Fatal(err)
	}
	a, err := gc.IdentityProtection().RiskyUsers().ByRiskyUserId(AliceID).Get(ctx, nil)
	if err != nil || a.GetRiskState().String() != "confirmedCompromised" || a.GetRiskLevel().String() != "high" {
		t.Fatalf("alice: %v", err)
	}
	b, err := gc.IdentityProtection().RiskyUsers().ByRiskyUserId(BobID).Get(ctx, nil)
	if err != nil || b.GetRiskState().String() != "dismissed" || b.GetRiskDetail().String() != "adminDismissedAllRiskForUser" {
		t.Fatalf("bob: %v", err)
	}
	bad := identityprotection.NewRiskyUsersDismissPostRequestBody()
	bad.SetUserIds([]string{})
	err = gc.IdentityProtection().RiskyUsers().Dismiss().Post(ctx, bad, nil)
	odataCode(t, err, 400, "BadRequest")
}

func TestDomainsAndDirectoryRoles(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	d, err := gc.Domains().Get(ctx, nil)
	if err != nil || len(d.GetValue()) != 2 || !*d.GetValue()[0].GetIsVerified() {
		t.Fatalf("domains: %v", err)
	}
	roles, err := gc.DirectoryRoles().Get(ctx, nil)
	if err != nil || len(roles.GetValue()) != 1 || *roles.GetValue()[0].GetRoleTemplateId() != roleTemplates["Global Administrator"] {
		t.Fatalf("roles: %v", err)
	}
	mem, err := gc.DirectoryRoles().ByDirectoryRoleId(*roles.GetValue()[0].GetId()).Members().Get(ctx, nil)
	if err != nil || len(mem.GetValue()) != 2 {
		t.Fatalf("members: %v", err)
	}
	u, ok := mem.GetValue()[1].(models.Userable)
	if !ok || *u.GetUserPrincipalName() != "breakglass@contoso.com" {
		t.Fatalf("member type %T", mem.GetValue()[1])
	}
}

func TestBatch(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	batch := msgraphcore.NewBatchRequest(gc.RequestAdapter)
	ri1, err := gc.Users().ByUserId(AliceID).RevokeSignInSessions().ToPostRequestInformation(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := batch.AddBatchRequestStep(*ri1)
	if err != nil {
		t.Fatal(err)
	}
	body := models.NewUser()
	f := false
	body.SetAccountEnabled(&f)
	ri2, _ := gc.Users().ByUserId(AliceID).ToPatchRequestInformation(ctx, body, nil)
	s2, _ := batch.AddBatchRequestStep(*ri2)
	s2.DependsOnItem(s1)
	ri3, _ := gc.Users().ByUserId(BobID).RevokeSignInSessions().ToPostRequestInformation(ctx, nil)
	s3, _ := batch.AddBatchRequestStep(*ri3)
	ri4, _ := gc.Users().ByUserId(BobID).ToPatchRequestInformation(ctx, body, nil)
	s4, _ := batch.AddBatchRequestStep(*ri4)
	s4.DependsOnItem(s3)
	// Bob's revoke is throttled: its dependent fails with 424.
	tn.AddFault(Fault{PathPrefix: "/v1.0/users/" + BobID + "/revokeSignInSessions", Status: 429, RetryAfter: "7", Count: 1})
	resp, err := batch.Send(ctx, gc.RequestAdapter)
	if err != nil {
		t.Fatal(err)
	}
	codes := resp.GetStatusCodes()
	if codes[*s1.GetId()] != 200 || codes[*s2.GetId()] != 204 || codes[*s3.GetId()] != 429 || codes[*s4.GetId()] != 424 {
		t.Fatalf("codes = %v", codes)
	}
	if h := resp.GetResponseById(*s3.GetId()).GetHeaders(); h["Retry-After"] != "7" {
		t.Fatalf("item headers = %v", h)
	}
	// Batch item errors map only through the registry key with 4XX/5XX.
	if err := msgraphcore.RegisterError(msgraphcore.BatchRequestErrorRegistryKey, abstractions.ErrorMappings{
		"4XX": odataerrors.CreateODataErrorFromDiscriminatorValue, "5XX": odataerrors.CreateODataErrorFromDiscriminatorValue}); err == nil {
		defer func() { _ = msgraphcore.DeRegisterError(msgraphcore.BatchRequestErrorRegistryKey) }()
	}
	_, err = msgraphcore.GetBatchResponseById[models.Userable](resp, *s3.GetId(), models.CreateUserFromDiscriminatorValue)
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || *oe.GetErrorEscaped().GetCode() != "TooManyRequests" {
		t.Fatalf("item error = %T %v", err, err)
	}
	if u, _ := tn.User(AliceID); u.AccountEnabled || u.RevokeCount != 1 {
		t.Fatalf("alice = %+v", u)
	}
	if u, _ := tn.User(BobID); !u.AccountEnabled {
		t.Fatal("bob disabled despite failed dependency")
	}
	var items int
	for _, e := range tn.WireLog() {
		if e.BatchID != "" {
			items++
		}
	}
	if items != 4 {
		t.Fatalf("batch items in wire log = %d", items)
	}
	// Over 20 and duplicate ids: the whole batch is refused.
	tok := bearer(t, tn, "https://graph.microsoft.com/.default")
	var reqs []string
	for i := 0; i < 21; i++ {
		reqs = append(reqs, fmt.Sprintf(`{"id":"%d","method":"GET","url":"/users/%s"}`, i, AliceID))
	}
	r, b := do(t, tn, http.MethodPost, tn.Info().GraphURL+"/$batch", tok, `{"requests":[`+strings.Join(reqs, ",")+`]}`)
	if r.StatusCode != 400 || !strings.Contains(b, "20") {
		t.Fatalf("21 requests: %d %s", r.StatusCode, b)
	}
	r, _ = do(t, tn, http.MethodPost, tn.Info().GraphURL+"/$batch", tok, `{"requests":[{"id":"a","method":"GET","url":"/users"},{"id":"A","method":"GET","url":"/users"}]}`)
	if r.StatusCode != 400 {
		t.Fatalf("duplicate ids: %d", r.StatusCode)
	}
	r, b = do(t, tn, http.MethodPost, tn.Info().GraphURL+"/$batch", tok, `{"requests":[{"id":"1","method":"PATCH","url":"/users/`+BobID+`","body":{"accountEnabled":false}}]}`)
	if r.StatusCode != 200 || !strings.Contains(b, `"status":400`) {
		t.Fatalf("body without content-type: %d %s", r.StatusCode, b)
	}
}
