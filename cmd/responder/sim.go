package main

import (
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

type simCmd struct {
	Listen     string        `help:"Listen address (loopback)." default:"127.0.0.1:0"`
	Delay      time.Duration `help:"Availability delay of injected records." default:"0s"`
	Throttling bool          `help:"Enforce Microsoft's throttling budgets."`
}

func (c *simCmd) Run(e *env) error {
	return m365sim.RunStandalone(e.ctx, m365sim.Options{
		Listen: c.Listen, Seed: m365sim.SeedOrg, AvailabilityDelay: c.Delay,
		Throttling: c.Throttling, Logger: e.log.With("part", "m365sim"),
	}, e.stdout)
}
