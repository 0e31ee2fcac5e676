package main

import (
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/demo"
)

type demoCmd struct {
	DataDir     string        `help:"Embedded NATS store (default: a fresh temporary directory, removed afterwards); with --scenario all, one subdirectory per scenario."`
	Playbooks   string        `help:"Playbook directory." default:"playbooks" env:"RESPONDER_PLAYBOOKS"`
	Scenario    string        `help:"Attack to play: a shipped playbook's name (risky-user, the default, plays high-risk-user), or all to play each in turn on a fresh sandbox and print a summary. --list shows them." default:"risky-user" placeholder:"NAME|all"`
	List        bool          `help:"List the scenarios, their playbooks' state and what each waits for, then exit."`
	Approve     bool          `help:"Approve the steps that wait for approval, as the local administrator, to show the whole flow (default: show them pending)."`
	Timeout     time.Duration `help:"Give up on a scenario after this long." default:"60s"`
	User        string        `help:"Seeded user the attack targets." default:"alice@contoso.com"`
	Verbose     bool          `short:"v" help:"Show the engine's logs (warnings and errors only otherwise)."`
	Console     bool          `help:"After the scenario, leave the engine and the analysts' web console running (until interrupted) and print its URL and the demo sign-ins."`
	ConsoleAddr string        `help:"Address of the console with --console." default:"127.0.0.1:9464"`
}

func (c *demoCmd) Run(e *env) error {
	if c.List {
		return demo.List(e.stdout, c.Playbooks)
	}
	log := e.log
	if !c.Verbose {
		log = newLogger(e.stderr, "warn", "text")
	}
	o := demo.Options{
		Out: e.stdout, DataDir: c.DataDir, PlaybookDir: c.Playbooks, Timeout: c.Timeout,
		Logger: log, User: c.User, Scenario: c.Scenario, Approve: c.Approve,
	}
	if c.Console {
		return runDemoConsole(e, o, c.ConsoleAddr)
	}
	if strings.EqualFold(c.Scenario, demo.All) {
		_, err := demo.RunAll(e.ctx, o)
		return err
	}
	_, err := demo.Run(e.ctx, o)
	return err
}
