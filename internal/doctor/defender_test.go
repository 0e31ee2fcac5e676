package doctor

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// Doctor gets a token for the Defender API audience and reads its roles: an
// app without Machine.Isolate fails the device actions only, naming it; one
// with every role passes; without a Defender scope the actions are left out.
func TestDoctorDefenderPermissions(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := []string{"block_device_ip", "block_domain", "block_file", "block_url", "isolate_device", "release_device", "remove_indicator"}
	if got := DefenderActions(); !slices.Equal(got, want) {
		t.Fatalf("defender actions %v", got)
	}
	cfg := simConfig(t, sim)
	cfg.DefenderScope = m365.DefenderScope
	cfg.Actions = want
	cfg.SkipGuard, cfg.SkipDirectoryRoles = true, true
	rep, err := Check(ctx, cfg)
	if err != nil || !rep.OK() {
		t.Fatalf("all roles: %v %v", err, rep.Err())
	}
	if roles := rep.Roles[Defender]; !slices.Contains(roles, "Machine.Isolate") || !slices.Contains(roles, "Ti.ReadWrite.All") {
		t.Fatalf("defender roles %v", roles)
	}
	info := sim.Info()
	var roles []string
	for _, r := range m365sim.ResponderRoles() {
		if r != "Machine.Isolate" {
			roles = append(roles, r)
		}
	}
	sim.SetRoles(info.ClientID, roles)
	sim.ExpireTokens()
	cfg = simConfig(t, sim) // a new credential: a new token
	cfg.DefenderScope = m365.DefenderScope
	cfg.Actions = want
	cfg.SkipGuard, cfg.SkipDirectoryRoles = true, true
	rep, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, row := range rep.Rows {
		if !row.OK {
			failed = append(failed, row.Name+"="+strings.Join(row.Missing, ","))
		}
	}
	if strings.Join(failed, " ") != "isolate_device=Machine.Isolate release_device=Machine.Isolate" {
		t.Fatalf("failed %v", failed)
	}
	// No Defender scope: the Defender actions are not in the default table.
	cfg.DefenderScope, cfg.Actions = "", nil
	if rep, err = Check(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, row := range rep.Rows {
		if row.Audience == Defender {
			t.Fatalf("defender row without a scope: %+v", row)
		}
	}
}
