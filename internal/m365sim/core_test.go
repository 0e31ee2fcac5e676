package m365sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
	"github.com/responder-sec/responder/internal/m365"
)

func TestTokenWithSecretAndCertificate(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()

	// Secret.
	gc := graphClient(t, creds(tn))
	u, err := gc.Users().ByUserId("alice@contoso.com").Get(ctx, nil)
	if err != nil {
		t.Fatalf("get user with secret: %v", err)
	}
	if got := *u.GetId(); got != AliceID {
		t.Fatalf("id = %s, want %s", got, AliceID)
	}

	// Certificate (PS256 assertion verified against the registered cert).
	keyCert, certOnly := selfSignedPEM(t)
	app := tn.AddApp(App{CertPEM: certOnly, Roles: []string{"User.Read.All"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret, c.CertPEM = app.ClientID, "", keyCert
	gc2 := graphClient(t, c)
	if _, err := gc2.Users().ByUserId(BobID).Get(ctx, nil); err != nil {
		t.Fatalf("get user with certificate: %v", err)
	}
	var sawAssertion bool
	for _, e := range tn.WireLog() {
		if strings.HasSuffix(e.Path, "/oauth2/v2.0/token") && strings.Contains(e.BodyText, "client_assertion=REDACTED") {
			sawAssertion = true
		}
	}
	if !sawAssertion {
		t.Fatal("no client_assertion token request in the wire log")
	}

	// A certificate the app does not hold is refused.
	otherKeyCert, _ := selfSignedPEM(t)
	c.CertPEM = otherKeyCert
	gc3 := graphClient(t, c)
	_, err = gc3.Users().ByUserId(BobID).Get(ctx, nil)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Fatalf("foreign certificate: err = %v, want AuthenticationFailedError with AADSTS700027", err)
	}

	// Wrong secret.
	c = creds(tn)
	c.ClientSecret = "wrong"
	_, err = graphClient(t, c).Users().ByUserId(BobID).Get(ctx, nil)
	if !errors.As(err, &afe) || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: err = %v", err)
	}
}

func TestDisableUserRevokeAndPassword(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))

	body := models.NewUser()
	f := false
	body.SetAccountEnabled(&f)
	if _, err := gc.Users().ByUserId("Alice@Contoso.com").Patch(ctx, body, nil); err != nil {
		t.Fatalf("patch: %v", err)
	}
	u, _ := tn.User("alice@contoso.com")
	if u.AccountEnabled {
		t.Fatal("alice still enabled")
	}
	// The wire log holds the gunzipped body the SDK sent.
	var patched bool
	for _, e := range tn.WireLog() {
		if e.Method == http.MethodPatch {
			var m map[string]any
			if err := json.Unmarshal(e.Body, &m); err != nil {
				t.Fatalf("wire body not JSON: %v", err)
			}
			if m["accountEnabled"] != false || m["@odata.type"] != "#microsoft.graph.user" || e.Status != 204 {
				t.Fatalf("wire entry = %+v", e)
			}
			patched = true
		}
	}
	if !patched {
		t.Fatal("PATCH not in wire log")
	}

	before := time.Now().Add(-time.Second)
	res, err := gc.Users().ByUserId(AliceID).RevokeSignInSessions().PostAsRevokeSignInSessionsPostResponse(ctx, nil)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if res.GetValue() == nil || !*res.GetValue() {
		t.Fatal("revoke value not true")
	}
	u, _ = tn.User(AliceID)
	if u.RevokeCount != 1 || u.SignInSessionsValidFrom.Before(before) {
		t.Fatalf("revoke not recorded: %+v", u)
	}

	// accountEnabled is not in the default property set; $select brings it.
	got, err := gc.Users().ByUserId(AliceID).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", "accountEnabled", "signInSessionsValidFrom"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAccountEnabled() == nil || *got.GetAccountEnabled() {
		t.Fatalf("selected props: enabled=%v", got.GetAccountEnabled())
	}

	// Password reset through passwordProfile; a weak password is refused.
	pp := models.NewPasswordProfile()
	weak, strong, force := "abc", "Tr0ub4dor&3xyz", true
	pp.SetPassword(&weak)
	body = models.NewUser()
	body.SetPasswordProfile(pp)
	_, err = gc.Users().ByUserId(BobID).Patch(ctx, body, nil)
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 400 || *oe.GetErrorEscaped().GetCode() != "Request_BadRequest" {
		t.Fatalf("weak password: %v", err)
	}
	pp.SetPassword(&strong)
	pp.SetForceChangePasswordNextSignIn(&force)
	if _, err := gc.Users().ByUserId(BobID).Patch(ctx, body, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := tn.User(BobID)
	if b.PasswordChanges != 1 || !b.ForceChangePasswordNextSignIn {
		t.Fatalf("password change not recorded: %+v", b)
	}

	// Privileged targets need a privileged directory role on the app.
	body = models.NewUser()
	body.SetAccountEnabled(&f)
	_, err = gc.Users().ByUserId("breakglass@contoso.com").Patch(ctx, body, nil)
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 403 || *oe.GetErrorEscaped().GetCode() != "Authorization_RequestDenied" {
		t.Fatalf("disable global admin: %v", err)
	}

	// Unknown user.
	_, err = gc.Users().ByUserId("nobody@contoso.com").Get(ctx, nil)
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 404 || *oe.GetErrorEscaped().GetCode() != "Request_ResourceNotFound" {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestListUsersFilterSelectPaging(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	for i := 0; i < 7; i++ {
		tn.AddUser(User{UserPrincipalName: fmt.Sprintf("temp%d@contoso.com", i), DisplayName: fmt.Sprintf("Temp O'Neil %d", i)})
	}
	top := int32(3)
	filter := "startswith(displayName,'Temp O''Neil')"
	res, err := gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{QueryParameters: &users.UsersRequestBuilderGetQueryParameters{
		Top: &top, Filter: &filter, Select: []string{"id", "userPrincipalName", "accountEnabled"}}})
	if err != nil {
		t.Fatal(err)
	}
	if next := res.GetOdataNextLink(); next == nil || !strings.HasPrefix(*next, tn.URL()+"/v1.0/users?") {
		t.Fatalf("nextLink = %v", next)
	}
	it, err := msgraphcore.NewPageIterator[models.Userable](res, gc.RequestAdapter, models.CreateUserCollectionResponseFromDiscriminatorValue)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = it.Iterate(ctx, func(u models.Userable) bool {
		if u.GetAccountEnabled() == nil {
			t.Errorf("accountEnabled not selected")
		}
		seen[*u.GetUserPrincipalName()] = true
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 7 {
		t.Fatalf("saw %d users over pages, want 7: %v", len(seen), seen)
	}
}

func TestRiskDetectionsPagingFilterAndDelay(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, AvailabilityDelay: time.Hour, TokenLifetime: 24 * time.Hour})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	start := clk.Now()
	for i := 0; i < 45; i++ {
		tn.InjectRiskDetection(RiskDetection{UserID: AliceID, RiskEventType: "unfamiliarFeatures", RiskLevel: "medium", IPAddress: "203.0.113.9"})
	}
	// Not yet available.
	res, err := gc.IdentityProtection().RiskDetections().Get(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.GetValue()); n != 0 {
		t.Fatalf("visible before delay: %d", n)
	}
	clk.Advance(time.Hour)
	filter := "lastUpdatedDateTime ge " + start.Format(time.RFC3339)
	top := int32(20)
	res, err = gc.IdentityProtection().RiskDetections().Get(ctx, &identityprotection.RiskDetectionsRequestBuilderGetRequestConfiguration{
		QueryParameters: &identityprotection.RiskDetectionsRequestBuilderGetQueryParameters{Filter: &filter, Top: &top}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := msgraphcore.NewPageIterator[models.RiskDetectionable](res, gc.RequestAdapter, models.CreateRiskDetectionCollectionResponseFromDiscriminatorValue)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	if err := it.Iterate(ctx, func(d models.RiskDetectionable) bool {
		ids[*d.GetId()] = true
		if d.GetTokenIssuerType() == nil || d.GetRiskLevel() == nil || d.GetRiskLevel().String() != "medium" || d.GetActivityDateTime() == nil {
			t.Errorf("detection fields not parsed: %v %v", d.GetTokenIssuerType(), d.GetRiskLevel())
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 45 {
		t.Fatalf("got %d detections, want 45", len(ids))
	}
	// gt a time after all of them: none.
	filter = "lastUpdatedDateTime gt " + clk.Now().Add(time.Minute).Format(time.RFC3339)
	res, err = gc.IdentityProtection().RiskDetections().Get(ctx, &identityprotection.RiskDetectionsRequestBuilderGetRequestConfiguration{
		QueryParameters: &identityprotection.RiskDetectionsRequestBuilderGetQueryParameters{Filter: &filter}})
	if err != nil || len(res.GetValue()) != 0 {
		t.Fatalf("gt filter: %v %d", err, len(res.GetValue()))
	}
	// riskyUsers reflects the detections.
	rf := "riskLastUpdatedDateTime ge " + start.Format(time.RFC3339)
	ru, err := gc.IdentityProtection().RiskyUsers().Get(ctx, &identityprotection.RiskyUsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &identityprotection.RiskyUsersRequestBuilderGetQueryParameters{Filter: &rf}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ru.GetValue()) != 1 || *ru.GetValue()[0].GetId() != AliceID || ru.GetValue()[0].GetRiskState().String() != "atRisk" {
		t.Fatalf("riskyUsers = %d", len(ru.GetValue()))
	}
	// $top above 500 is refused.
	big := int32(501)
	_, err = gc.IdentityProtection().RiskDetections().Get(ctx, &identityprotection.RiskDetectionsRequestBuilderGetRequestConfiguration{
		QueryParameters: &identityprotection.RiskDetectionsRequestBuilderGetQueryParameters{Top: &big}})
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 400 {
		t.Fatalf("$top 501: %v", err)
	}
}

func TestFault403OnPatchIsODataError(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	remove := tn.AddFault(Fault{Method: "PATCH", PathPrefix: "/v1.0/users/", Status: 403, Code: "Authorization_RequestDenied"})
	f := false
	body := models.NewUser()
	body.SetAccountEnabled(&f)
	_, err := gc.Users().ByUserId(AliceID).Patch(ctx, body, nil)
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %T %v, want *odataerrors.ODataError", err, err)
	}
	me := oe.GetErrorEscaped()
	if oe.ResponseStatusCode != 403 || *me.GetCode() != "Authorization_RequestDenied" || *me.GetMessage() != "Insufficient privileges to complete the operation." {
		t.Fatalf("error = %d %s %s", oe.ResponseStatusCode, *me.GetCode(), *me.GetMessage())
	}
	if me.GetInnerError() == nil || me.GetInnerError().GetRequestId() == nil || me.GetInnerError().GetClientRequestId() == nil || me.GetInnerError().GetDate() == nil {
		t.Fatal("innerError incomplete")
	}
	if oe.GetResponseHeaders().Get("request-id") == nil || oe.GetResponseHeaders().Get("client-request-id") == nil {
		t.Fatal("request-id headers missing")
	}
	if u, _ := tn.User(AliceID); !u.AccountEnabled {
		t.Fatal("fault must not change state")
	}
	remove()
	if _, err := gc.Users().ByUserId(AliceID).Patch(ctx, body, nil); err != nil {
		t.Fatalf("after removing the fault: %v", err)
	}
}

func TestExpiredAndMissingTokenAre401(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: time.Hour})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	if _, err := gc.Users().ByUserId(AliceID).Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	clk.Advance(61 * time.Minute) // the emulator's clock passes exp; the SDK's cache does not know
	_, err := gc.Users().ByUserId(AliceID).Get(ctx, nil)
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 401 || *oe.GetErrorEscaped().GetCode() != "InvalidAuthenticationToken" {
		t.Fatalf("expired token: %v", err)
	}
	resp, body := do(t, tn, "GET", tn.Info().GraphURL+"/users", "", "")
	if resp.StatusCode != 401 || !strings.Contains(body, "InvalidAuthenticationToken") || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, tn, "GET", tn.Info().GraphURL+"/users", "not-a-jwt", "")
	if resp.StatusCode != 401 || !strings.Contains(body, "CompactToken") {
		t.Fatalf("bad token: %d %s", resp.StatusCode, body)
	}
}

func TestExpireTokensMidRunCAERecovers(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	if _, err := gc.Users().ByUserId(AliceID).Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tn.ExpireTokens()
	tn.ResetWireLog()
	if _, err := gc.Users().ByUserId(AliceID).Get(ctx, nil); err != nil {
		t.Fatalf("SDK did not recover from the CAE challenge: %v", err)
	}
	var st []int
	for _, e := range tn.WireLog() {
		st = append(st, e.Status)
	}
	// 401 challenge, new token, 200.
	if len(st) != 3 || st[0] != 401 || st[2] != 200 {
		t.Fatalf("statuses = %v", st)
	}
}

func TestMissingPermissionIsNamed(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	app := tn.AddApp(App{ClientSecret: "s3cret", Roles: []string{"Mail.ReadWrite"}})
	c := creds(tn)
	c.ClientID, c.ClientSecret = app.ClientID, "s3cret"
	gc := graphClient(t, c)
	_, err := gc.Users().ByUserId(AliceID).Get(ctx, nil)
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || oe.ResponseStatusCode != 403 || *oe.GetErrorEscaped().GetCode() != "Authorization_RequestDenied" {
		t.Fatalf("err = %v", err)
	}
	_, err = gc.IdentityProtection().RiskDetections().Get(ctx, nil)
	if !errors.As(err, &oe) || !strings.Contains(*oe.GetErrorEscaped().GetMessage(), "IdentityRiskEvent.Read.All") {
		t.Fatalf("idp err = %v", err)
	}
	log := tn.WireLog()
	var named []string
	for _, e := range log {
		if e.MissingPermission != "" {
			named = append(named, e.MissingPermission)
		}
	}
	if strings.Join(named, ",") != "User.Read.All,IdentityRiskEvent.Read.All" {
		t.Fatalf("missing permissions = %v", named)
	}
}

func TestEnableDisableNeedsReadPermissionToo(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	tok := func(roles ...string) string {
		app := tn.AddApp(App{ClientSecret: "x", Roles: roles})
		c := creds(tn)
		c.ClientID, c.ClientSecret = app.ClientID, "x"
		cred, err := c.TokenCredential()
		if err != nil {
			t.Fatal(err)
		}
		tk, _, err := m365.Token(context.Background(), cred, c.GraphScope())
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	url := tn.Info().GraphURL + "/users/" + BobID
	r, b := do(t, tn, "PATCH", url, tok("User.EnableDisableAccount.All"), `{"accountEnabled":false}`)
	if r.StatusCode != 403 || !strings.Contains(b, "Authorization_RequestDenied") {
		t.Fatalf("enable/disable alone: %d %s", r.StatusCode, b)
	}
	if e := tn.WireLog(); e[len(e)-1].MissingPermission != "User.Read.All" {
		t.Fatalf("missing = %q", e[len(e)-1].MissingPermission)
	}
	r, b = do(t, tn, "PATCH", url, tok("User.EnableDisableAccount.All", "User.Read.All"), `{"accountEnabled":false}`)
	if r.StatusCode != 204 {
		t.Fatalf("with read: %d %s", r.StatusCode, b)
	}
	r, _ = do(t, tn, "PATCH", url, tok("User.Read.All"), `{"accountEnabled":true}`)
	if r.StatusCode != 403 {
		t.Fatalf("read only: %d", r.StatusCode)
	}
}

func TestRiskyUserKeepsOldStateDuringDelay(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, AvailabilityDelay: time.Hour, TokenLifetime: 24 * time.Hour})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	tn.InjectRiskDetection(RiskDetection{UserID: AliceID, RiskLevel: "low"})
	if _, err := gc.IdentityProtection().RiskyUsers().ByRiskyUserId(AliceID).Get(ctx, nil); err == nil {
		t.Fatal("risky user visible before the delay")
	}
	clk.Advance(time.Hour)
	tn.InjectRiskDetection(RiskDetection{UserID: AliceID, RiskLevel: "high"})
	ru, err := gc.IdentityProtection().RiskyUsers().ByRiskyUserId(AliceID).Get(ctx, nil)
	if err != nil || ru.GetRiskLevel().String() != "low" {
		t.Fatalf("during delay: %v", err)
	}
	clk.Advance(time.Hour)
	ru, err = gc.IdentityProtection().RiskyUsers().ByRiskyUserId(AliceID).Get(ctx, nil)
	if err != nil || ru.GetRiskLevel().String() != "high" {
		t.Fatalf("after delay: %v", err)
	}
}

func TestUserWithQuoteInUPN(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	ctx := context.Background()
	gc := graphClient(t, creds(tn))
	tn.AddUser(User{UserPrincipalName: "o'brien+ops@contoso.com", DisplayName: "Pat O'Brien"})
	u, err := gc.Users().ByUserId("o'brien+ops@contoso.com").Get(ctx, nil)
	if err != nil || *u.GetDisplayName() != "Pat O'Brien" {
		t.Fatalf("get: %v", err)
	}
	f := "userPrincipalName eq 'o''brien+ops@contoso.com'"
	res, err := gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Filter: &f}})
	if err != nil || len(res.GetValue()) != 1 {
		t.Fatalf("filter: %v", err)
	}
	f = "endswith(mail,'@contoso.com')"
	_, err = gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Filter: &f}})
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) || *oe.GetErrorEscaped().GetCode() != "Request_UnsupportedQuery" {
		t.Fatalf("advanced query without ConsistencyLevel: %v", err)
	}
}
