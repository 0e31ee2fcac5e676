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
}

func (c *demoCmd) Run(e *env) error {
	_, err := demo.Run(e.ctx, demo.Options{
		Out: e.stdout, DataDir: c.DataDir, PlaybookDir: c.Playbooks, Timeout: c.Timeout,
		Logger: e.log, User: c.User,
	})
	return err
}
