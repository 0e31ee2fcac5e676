package event

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoGraphSDKDependency enforces the package contract: event is pure and must
// never pull in the Graph SDK (directly or through another package), neither in
// the package itself nor in its tests.
func TestNoGraphSDKDependency(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-test", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -test .: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list returned no packages")
	}
	for _, dep := range deps {
		if strings.Contains(dep, "msgraph-sdk-go") {
			t.Errorf("internal/event depends on %s; it must not import the Graph SDK", dep)
		}
	}
}
