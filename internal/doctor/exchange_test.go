package doctor

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions/graphexec"
	"github.com/responder-sec/responder/internal/m365"
	"github.com/responder-sec/responder/internal/m365sim"
)

// TestDoctorProbesInvokeCommand: doctor runs a harmless read through the
// actions' InvokeCommand adapter; while it answers the Exchange actions pass
// and the report says so; once Microsoft retires the endpoint (the emulator
// answers 410) they fail and the report says it is gone and names the
// documented fallback.
func TestDoctorProbesInvokeCommand(t *testing.T) {
	sim, err := m365sim.New(m365sim.Options{Seed: m365sim.SeedSmall})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info := sim.Info()
	c := m365.Credentials{TenantID: info.TenantID, ClientID: info.ClientID, ClientSecret: info.ClientSecret,
		LoginURL: info.LoginURL, GraphURL: info.GraphURL, ManageURL: info.ManageURL, ExchangeURL: info.ExchangeURL, HTTPClient: sim.HTTPClient()}
	cfg := simConfig(t, sim)
	cfg.ExchangeScope = c.ExchangeScope()
	cfg.Feeds, cfg.Actions, cfg.SkipGuard = []string{}, []string{"remove_mailbox_forwarding", "restore_mailbox_forwarding"}, true
	cfg.ExchangeProbe = graphexec.InvokeCommandProbe(m365.BearerClient(c, cfg.Credential, c.ExchangeScope()), c.ExchangeAdminURL(), info.TenantID)

	rep, err := Check(ctx, cfg)
	if err != nil || !rep.OK() || rep.ExchangeAPI == "" || rep.ExchangeAPIError != "" {
		t.Fatalf("working endpoint: %v %+v", err, rep)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil || !strings.Contains(out.String(), "InvokeCommand Get-Mailbox -ResultSize 1 answered") {
		t.Errorf("report: %v\n%s", err, out.String())
	}

	restore := sim.RetireInvokeCommand(http.StatusGone)
	defer restore()
	rep, err = Check(ctx, cfg)
	if err != nil || rep.OK() {
		t.Fatalf("retired endpoint passed: %v %+v", err, rep.Rows)
	}
	msg := rep.Err().Error()
	for _, w := range []string{"action remove_mailbox_forwarding", "action restore_mailbox_forwarding", "answered 410", "may have been retired", "v2.0 admin API"} {
		if !strings.Contains(msg, w) {
			t.Errorf("doctor's error lacks %q:\n%s", w, msg)
		}
	}
	out.Reset()
	if err := rep.Print(&out); err != nil || !strings.Contains(out.String(), "exchange admin API:  FAILED") {
		t.Errorf("report:\n%s", out.String())
	}
}
