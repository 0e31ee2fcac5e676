package actions

import (
	"os/exec"
	"strings"
	"testing"
)

// The contract and the worker compile without the Graph SDK: only graphexec
// imports it.
func TestNoGraphSDKDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	if strings.Contains(string(out), "msgraph-sdk-go") || strings.Contains(string(out), "kiota") {
		t.Error("internal/actions depends on the Graph SDK")
	}
}
