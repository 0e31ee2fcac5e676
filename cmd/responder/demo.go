package main

import (
	"time"

	"github.com/responder-sec/responder/internal/demo"
)

type demoCmd struct {
	DataDir   string        `help:"Embedded NATS store (default: a fresh temporary directory, removed afterwards)."`
	Playbooks string        `help:"Playbook directory." default:"playbooks" env:"RESPONDER_PLAYBOOKS"`
	Timeout   time.Duration `help:"Give up after this long." default:"60s"`
	User      string        `help:"Seeded user the attack targets." default:"alice@contoso.com"`
	Verbose   bool          `short:"v" help:"Show the engine's logs (warnings and errors only otherwise)."`
}

func (c *demoCmd) Run(e *env) error {
	log := e.log
	if !c.Verbose {
		log = newLogger(e.stderr, "warn", "text")
	}
	_, err := demo.Run(e.ctx, demo.Options{
		Out: e.stdout, DataDir: c.DataDir, PlaybookDir: c.Playbooks, Timeout: c.Timeout,
		Logger: log, User: c.User,
	})
	return err
}
