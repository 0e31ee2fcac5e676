package doctor

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

// The app holds every permission but its service principal lacks the User
// Administrator directory role: doctor reads the role assignments and names
// the role for reset_password only; disable_user's role is conditional (a
// note, not a failure).
func TestDoctorNamesMissingDirectoryRole(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info := sim.Info()
	sim.AddApp(m365sim.App{ClientID: info.ClientID, ClientSecret: info.ClientSecret, Roles: m365sim.ResponderRoles(),
		DisplayName: "Responder", DirectoryRoles: []string{"Exchange Recipient Administrator"}})
	rep, err := Check(ctx, simConfig(t, sim))
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, row := range rep.Rows {
		if !row.OK {
			failed = append(failed, row.Name+"="+row.missing()+row.Problem)
		}
		if row.Name == "disable_user" && !strings.Contains(row.RoleNote, "Privileged Authentication Administrator") {
			t.Errorf("disable_user note %q", row.RoleNote)
		}
	}
	if len(failed) != 1 || failed[0] != "reset_password=directory role User Administrator" {
		t.Fatalf("failed rows %v, want reset_password missing the User Administrator role", failed)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "reset_password: missing directory role User Administrator") {
		t.Fatalf("Err = %v", err)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "directory roles:  Exchange Recipient Administrator") {
		t.Fatalf("print:\n%s", out.String())
	}

	// Privileged Authentication Administrator covers User Administrator.
	sim.AddApp(m365sim.App{ClientID: info.ClientID, ClientSecret: info.ClientSecret, Roles: m365sim.ResponderRoles(),
		DisplayName: "Responder", DirectoryRoles: []string{"Exchange Recipient Administrator", "Privileged Authentication Administrator"}})
	if rep, err = Check(ctx, simConfig(t, sim)); err != nil || !rep.OK() {
		t.Fatalf("with PAA: %v %v", err, rep.Err())
	}
}

func TestParseRole(t *testing.T) {
	n, _ := ParseRole("Exchange Recipient Administrator (or Exchange Administrator)")
	if n.Role != "Exchange Recipient Administrator" || n.Conditional || !strings.Contains(strings.Join(n.AnyOf, "|"), "Exchange Administrator") {
		t.Fatalf("%+v", n)
	}
}
