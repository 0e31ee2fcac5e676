package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// The audit package is linked into every part of Responder, the CLI's read-only
// commands included: it must not pull in the Graph SDK or the Azure stack.
func TestNoGraphSDKDependency(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", "github.com/responder-sec/responder/internal/audit").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/microsoftgraph/",
		"github.com/microsoft/kiota",
		"github.com/Azure/azure-sdk-for-go",
		"github.com/AzureAD/",
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list printed nothing")
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("internal/audit depends on %s", dep)
			}
		}
	}
}
