package bench

import (
	"context"
	"testing"
	"time"
)

// TestAuditQueryScenarioSmall runs the audit-query scenario end to end on a
// small trail: every record written and indexed, and every sampled page
// holds exactly the records a scan selects (no timing asserted).
func TestAuditQueryScenarioSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := Run(ctx, Scenarios(), "audit-query", Options{N: 3000, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 3000 || res.Extra["pages"].(int) < 200 {
		t.Errorf("audit-query result: %+v", res)
	}
	assertChecks(t, res, 3)
}
