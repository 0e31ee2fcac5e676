package m365sim

import (
	"context"
	"testing"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/identityprotection"
)

// A detection published late is invisible until its time comes and then shows
// its original timestamps (lastUpdatedDateTime == detectedDateTime, as in
// Microsoft's sample); the user's riskyUsers state changes only then.
func TestRiskDetectionPublishedLate(t *testing.T) {
	clk := newFakeClock()
	tn := startTenant(t, Options{Seed: SeedSmall, Now: clk.Now, TokenLifetime: 30 * 24 * time.Hour})
	gc := graphClient(t, creds(tn))
	ctx := context.Background()
	at := clk.Now()
	late := MicrosoftLateness()
	d := tn.InjectRiskDetection(late.Detection(RiskDetection{UserPrincipalName: "alice@contoso.com", RiskLevel: "high", DetectionTimingType: "offline"}))
	if d.Late != 48*time.Hour || !d.LastUpdatedDateTime.Equal(at) || !d.DetectedDateTime.Equal(at) {
		t.Fatalf("detection %+v", d)
	}
	list := func() int {
		t.Helper()
		res, err := gc.IdentityProtection().RiskDetections().Get(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(res.GetValue())
	}
	clk.Advance(47 * time.Hour)
	if n := list(); n != 0 {
		t.Fatalf("visible %d before its time", n)
	}
	if ru, ok := tn.RiskyUser("alice@contoso.com"); ok {
		res, err := gc.IdentityProtection().RiskyUsers().ByRiskyUserId(ru["id"].(string)).Get(ctx, nil)
		if err == nil && res.GetRiskLevel() != nil && res.GetRiskLevel().String() == "high" {
			t.Fatal("risky user shows the late detection early")
		}
	}
	clk.Advance(time.Hour)
	res, err := gc.IdentityProtection().RiskDetections().Get(ctx, &identityprotection.RiskDetectionsRequestBuilderGetRequestConfiguration{})
	if err != nil || len(res.GetValue()) != 1 {
		t.Fatalf("after 48h: %v", err)
	}
	got := res.GetValue()[0]
	if !got.GetLastUpdatedDateTime().Equal(at) || !got.GetDetectedDateTime().Equal(at) {
		t.Fatalf("timestamps moved: %v %v, want %v", got.GetLastUpdatedDateTime(), got.GetDetectedDateTime(), at)
	}
	ru, err := gc.IdentityProtection().RiskyUsers().Get(ctx, nil)
	if err != nil || len(ru.GetValue()) != 1 || ru.GetValue()[0].GetRiskLevel().String() != "high" ||
		!ru.GetValue()[0].GetRiskLastUpdatedDateTime().Equal(at) {
		t.Fatalf("risky user after the detection showed: %v", err)
	}
}
