package defenderexec_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/clock/clocktest"
	"github.com/responder-sec/responder/internal/m365sim"
)

// The poll follows Pending → InProgress → Succeeded on the tenant's clock
// with a doubling backoff, no sleeps: the test advances the clock each time
// the executor arms its timer.
func TestFollowPollsWithBackoffUntilFinal(t *testing.T) {
	fc := clocktest.New(time.Now().UTC().Truncate(time.Second))
	sim := newSim(t, m365sim.Options{Now: fc.Now})
	sim.SetMachineActionTiming(10*time.Second, 60*time.Second)
	dx, _ := newDefender(t, sim, defenderexec.Config{Clock: fc, PollInitial: 2 * time.Second, PollMax: 30 * time.Second, PollTimeout: 10 * time.Minute})
	req := request(actions.IsolateDevice, actions.Target{Device: "desktop-12.contoso.com"}, nil)
	p, err := actions.ParseParams(req.Action, req.Target, req.Params)
	if err != nil {
		t.Fatal(err)
	}
	type out struct {
		res actions.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := dx.Handlers()[actions.IsolateDevice].Execute(context.Background(), req, p)
		done <- out{r, err}
	}()
	var waits []time.Duration
	for {
		select {
		case o := <-done:
			if o.err != nil || !strings.Contains(o.res.Detail, "Succeeded") {
				t.Fatalf("%+v %v", o.res, o.err)
			}
			if got := fmt.Sprint(waits); got != "[2s 4s 8s 16s 30s]" {
				t.Fatalf("poll waits %s", got)
			}
			if m, _ := sim.MachineByName("desktop-12.contoso.com"); !m.Isolated {
				t.Fatal("not isolated")
			}
			if n := wireCount(sim, "GET", "/api/machineactions/"); n != 5 {
				t.Fatalf("%d polls, want 5", n)
			}
			return
		case d := <-fc.Armed:
			waits = append(waits, d)
			fc.Advance(d)
		case <-time.After(20 * time.Second):
			t.Fatal("stuck")
		}
	}
}

// Concurrent indicator requests go out in the fewest calls: one read and
// ceil(n/500) imports.
func TestIndicatorsCoalescedIntoImports(t *testing.T) {
	sim := newSim(t, m365sim.Options{})
	dx, _ := newDefender(t, sim, defenderexec.Config{CoalesceWindow: 200 * time.Millisecond,
		Budgets: defenderexec.NewBudgets(defenderexec.Limits{Import: defenderexec.DefaultLimits().PerMinute}, nil)})
	const n = 1100
	h := dx.Handlers()[actions.BlockFile]
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request(actions.BlockFile, actions.Target{File: fmt.Sprintf("%064x", i+1)}, nil)
			p, err := actions.ParseParams(req.Action, req.Target, req.Params)
			if err == nil {
				var r actions.Result
				r, err = h.Execute(context.Background(), req, p)
				if err == nil && r.Undo == nil {
					err = fmt.Errorf("no inverse for %s", req.Target.File)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(sim.Indicators()); got != n {
		t.Fatalf("%d indicators, want %d", got, n)
	}
	if imports, reads := wireCount(sim, "POST", "/api/indicators/import"), wireCount(sim, "GET", "/api/indicators"); imports != 3 || reads != 3 || dx.Rounds() != 3 {
		t.Fatalf("%d imports, %d reads in %d rounds; want 3, 3, 3", imports, reads, dx.Rounds())
	}
}

func TestCheckDevice(t *testing.T) {
	ws := defenderexec.Machine{ID: strings.Repeat("a", 40), ComputerDNSName: "desktop-01.contoso.com", OSPlatform: "Windows11"}
	srv := defenderexec.Machine{ID: strings.Repeat("b", 40), ComputerDNSName: "fs01.contoso.com", OSPlatform: "WindowsServer2019"}
	lnx := defenderexec.Machine{ID: strings.Repeat("c", 40), ComputerDNSName: "app01.contoso.com", OSPlatform: "Linux", MachineTags: []string{"DC"}}
	tagged := defenderexec.Machine{ID: strings.Repeat("d", 40), ComputerDNSName: "ceo.contoso.com", OSPlatform: "Windows11", MachineTags: []string{"Responder-Protected"}}
	pb := byPlaybook(request(actions.IsolateDevice, actions.Target{Device: "x"}, nil))
	an := request(actions.IsolateDevice, actions.Target{Device: "x"}, nil)
	ov := request(actions.IsolateDevice, actions.Target{Device: "x"}, nil)
	ov.OverrideProtected = true
	prot, tags, servers := []string{"desktop-01"}, []string{"responder-protected"}, []string{"server", "dc"}
	for _, c := range []struct {
		name     string
		req      *actions.Request
		m        defenderexec.Machine
		allow    bool
		approval bool
		override bool
	}{
		{"listed by short name, playbook", pb, ws, false, false, false},
		{"listed, analyst", an, ws, false, false, false},
		{"listed, analyst override", ov, ws, true, false, true},
		{"tag, playbook", pb, tagged, false, false, false},
		{"server osPlatform, playbook", pb, srv, true, true, false},
		{"server tag, playbook", pb, lnx, true, true, false},
		{"server, analyst", an, srv, true, false, false},
	} {
		d := defenderexec.CheckDevice(c.req, c.m, prot, tags, servers)
		if d.Allow != c.allow || (d.Approval != "") != c.approval || d.Override != c.override || d.Reason == "" && !c.allow {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
}

func TestCheckIndicator(t *testing.T) {
	verified := []string{"contoso.com", "contoso.onmicrosoft.com"}
	for _, c := range []struct {
		ind   actions.Indicator
		allow bool
	}{
		{actions.Indicator{Type: actions.IndicatorDomain, Value: "contoso.com"}, false},
		{actions.Indicator{Type: actions.IndicatorDomain, Value: "sub.contoso.com"}, false},
		{actions.Indicator{Type: actions.IndicatorDomain, Value: "notcontoso.com"}, true},
		{actions.Indicator{Type: actions.IndicatorDomain, Value: "office.com"}, false},
		{actions.Indicator{Type: actions.IndicatorURL, Value: "https://contoso.com.evil.example/x"}, true},
		{actions.Indicator{Type: actions.IndicatorURL, Value: "http://www.microsoft.com/"}, false},
		{actions.Indicator{Type: actions.IndicatorURL, Value: "http://203.0.113.5/x"}, true},
		{actions.Indicator{Type: actions.IndicatorFileSha1, Value: strings.Repeat("a", 40)}, false},
		{actions.Indicator{Type: actions.IndicatorFileSha1, Value: strings.Repeat("b", 40)}, true},
	} {
		if d := defenderexec.CheckIndicator(c.ind, verified, []string{strings.Repeat("A", 40)}); d.Allow != c.allow {
			t.Errorf("%+v: %+v", c.ind, d)
		}
	}
}
