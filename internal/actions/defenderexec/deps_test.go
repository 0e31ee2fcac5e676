package defenderexec

import (
	"os/exec"
	"strings"
	"testing"
)

// The Defender executor is plain HTTP: it compiles without the Graph SDK.
func TestNoGraphSDKDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	if strings.Contains(string(out), "msgraph-sdk-go") || strings.Contains(string(out), "kiota") {
		t.Error("internal/actions/defenderexec depends on the Graph SDK")
	}
}
