package m365sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// RunStandalone runs a tenant for `responder sim`: it seeds the organisation
// (SeedOrg unless opts.Seed says otherwise), writes the CA certificate into a
// temporary directory, prints one JSON line (Info, with ca_file) on stdout and
// serves until ctx ends.
func RunStandalone(ctx context.Context, opts Options, stdout io.Writer) error {
	if opts.Seed == SeedNone {
		opts.Seed = SeedOrg
	}
	t, err := New(opts)
	if err != nil {
		return err
	}
	defer t.Close()
	info := t.Info()
	if opts.TLSDir != "" {
		// The CA New kept there (hosted.go); no temporary directory needed.
		info.CAFile = filepath.Join(opts.TLSDir, CAFileName)
	} else {
		dir, err := os.MkdirTemp("", "m365sim-")
		if err != nil {
			return fmt.Errorf("m365sim: temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
		info.CAFile = filepath.Join(dir, "ca.pem")
		if err := t.WriteCAFile(info.CAFile); err != nil {
			return err
		}
	}
	if opts.ClientSecret != "" {
		info.ClientSecret = "[the one given]" // the caller knows it; logs need not
	}
	line, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("m365sim: info: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return fmt.Errorf("m365sim: write info: %w", err)
	}
	<-ctx.Done()
	return t.Close()
}
