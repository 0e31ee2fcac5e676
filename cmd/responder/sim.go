package main

import (
	"fmt"
	"time"

	"github.com/responder-sec/responder/internal/m365sim"
)

type simCmd struct {
	Listen       string        `help:"Listen address (loopback; beyond it, e.g. a compose network, the unauthenticated /_sim admin API is reachable by every machine there)." default:"127.0.0.1:0"`
	Delay        time.Duration `help:"Availability delay of injected records." default:"0s"`
	Throttling   bool          `help:"Enforce Microsoft's throttling budgets."`
	Hostname     []string      `help:"Names the emulator is reached by besides loopback (put in its certificate); the first is the host of the URLs it prints (compose: sim)."`
	TLSDir       string        `name:"tls-dir" help:"Keep the emulator's CA here (ca.pem for SSL_CERT_FILE, ca-key.pem), made when missing, so clients trust it across restarts (default: a fresh CA each start)." type:"path"`
	ClientSecret string        `help:"Secret of the emulator's application instead of a generated one (compose: the engines' RESPONDER_CLIENT_SECRET)." env:"RESPONDER_SIM_CLIENT_SECRET"`
	InitCA       bool          `name:"init-ca" help:"Make the CA of --tls-dir when missing, print where it is, and exit."`
}

func (c *simCmd) Run(e *env) error {
	if c.InitCA {
		if c.TLSDir == "" {
			return fmt.Errorf("--init-ca needs --tls-dir")
		}
		if _, err := m365sim.EnsureCA(c.TLSDir); err != nil {
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "emulator CA: %s/%s\n", c.TLSDir, m365sim.CAFileName)
		return err
	}
	return m365sim.RunStandalone(e.ctx, m365sim.Options{
		Listen: c.Listen, Seed: m365sim.SeedOrg, AvailabilityDelay: c.Delay,
		Throttling: c.Throttling, Logger: e.log.With("part", "m365sim"),
		Hosts: c.Hostname, TLSDir: c.TLSDir, ClientSecret: c.ClientSecret,
	}, e.stdout)
}
