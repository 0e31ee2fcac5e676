package playbooktest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps fails when the package pulls in the Graph SDK (or anything that
// imports it), in the manner of tailscale's tstest/deptest.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH; cannot list dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list -deps gave too little: %q", out)
	}
	// The Graph SDK and its kiota runtime are slow to build and have no place in
	// a tool that touches nothing.
	forbidden := []string{"msgraph-sdk-go", "microsoft/kiota-"}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.Contains(d, f) {
				t.Errorf("playbooktest depends on %s (forbidden: %s)", d, f)
			}
		}
	}
}
