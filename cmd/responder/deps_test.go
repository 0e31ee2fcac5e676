package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The shipped binary carries no test harness: neither the testing package
// nor the test helpers (bus/bustest, clock/clocktest) are among its
// dependencies.
func TestBinaryHasNoTestHarness(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps gave too little: %q", out)
	}
	for _, d := range deps {
		if d == "testing" || strings.HasSuffix(d, "/bustest") || strings.HasSuffix(d, "/clocktest") {
			t.Errorf("the responder binary depends on %s", d)
		}
	}
}
