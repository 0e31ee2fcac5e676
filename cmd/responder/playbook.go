package main

import (
	"fmt"

	"github.com/responder-sec/responder/internal/playbook"
)

type playbookCmd struct {
	Validate playbookValidateCmd `cmd:"" help:"Check every playbook; report every problem with file, line, playbook and step."`
}

type playbookValidateCmd struct {
	Dir string `arg:"" optional:"" help:"Playbook directory." default:"playbooks" env:"RESPONDER_PLAYBOOKS"`
}

type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }
func (e *invalidError) ExitCode() int { return 2 }

func (c *playbookValidateCmd) Run(e *env) error {
	set, err := playbook.LoadDir(c.Dir, playbook.LoadOptions{})
	if err != nil {
		return &invalidError{err: err}
	}
	n := 0
	for _, p := range set.Playbooks() {
		state := "enabled"
		if !p.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(e.stdout, "ok  %-40s %s\n", p.Name, state)
		n++
	}
	fmt.Fprintf(e.stdout, "%d playbooks valid in %s\n", n, c.Dir)
	return nil
}
