package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/responder-sec/responder/internal/playbook"
	"github.com/responder-sec/responder/internal/playbooktest"
)

type playbookCmd struct {
	Validate playbookValidateCmd `cmd:"" help:"Check every playbook; report every problem with file, line, playbook and step."`
	Test     playbookTestCmd     `cmd:"" help:"Run records as Microsoft publishes them through the playbooks; touches nothing."`
}

type playbookTestCmd struct {
	Playbooks       string   `help:"Playbook directory." default:"playbooks" env:"RESPONDER_PLAYBOOKS"`
	JSON            bool     `name:"json" help:"One JSON object per record per line."`
	All             bool     `help:"Also evaluate disabled playbooks."`
	VerifiedDomains []string `help:"The tenant's verified domains (for external forwarding)." env:"RESPONDER_VERIFIED_DOMAINS"`
	Files           []string `arg:"" help:"Files of records (JSON object, array, NDJSON, or a Graph list with value); - for stdin."`
}

func (c *playbookTestCmd) Run(e *env) error {
	set, err := playbook.LoadDir(c.Playbooks, playbook.LoadOptions{VerifiedDomains: c.VerifiedDomains, BaseDir: c.Playbooks})
	if err != nil {
		return &invalidError{err: err}
	}
	if c.All {
		set = set.WithAllEnabled()
	}
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	defer w.Flush()
	for _, name := range c.Files {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		if err := playbooktest.Run(e.ctx, set, bufio.NewReaderSize(r, 256<<10), name, w, c.JSON); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
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
