package doctor

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// On a tenant with Entra ID P1 but not P2 every permission is granted, yet
// the risky-user feed cannot work: doctor probes the endpoint and says why.
func TestDoctorSaysWhyIdentityProtectionIsParked(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall, Licence: m365sim.LicenceP1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := simConfig(t, sim)
	cfg.Actions, cfg.SkipGuard, cfg.SkipDirectoryRoles = []string{}, true, true
	rep, err := Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep.probeLicences(ctx, cfg) // idempotent when Check already probed
	var failed []string
	for _, row := range rep.Rows {
		if !row.OK {
			failed = append(failed, row.Name+": "+row.Problem)
		}
	}
	if len(failed) != 1 || !strings.HasPrefix(failed[0], "risky_user: tenant has no Entra ID P2 licence: Identity Protection feeds parked") ||
		!strings.Contains(failed[0], "Authentication_RequestFromNonPremiumTenantOrB2CTenant") {
		t.Fatalf("failed rows %q", failed)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no Entra ID P2 licence") {
		t.Fatalf("print:\n%s", out.String())
	}

	// With P2 nothing is said.
	sim.SetLicence(m365sim.LicenceP2)
	rep, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep.probeLicences(ctx, cfg)
	if !rep.OK() {
		t.Fatalf("with P2: %v", rep.Err())
	}
}
