package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/responder-sec/responder/internal/analyst"
)

type keysCmd struct {
	New keysNewCmd `cmd:"" help:"Make an Ed25519 key pair (nkey) for an analyst or an engine."`
}

type keysNewCmd struct {
	Name string `arg:"" help:"Analyst name (letters, digits, . _ @ -)."`
	Out  string `help:"Directory for NAME.nk (the seed, mode 0600) and NAME.pub." default:"." type:"path"`
	Role string `help:"What the key is for: analyst (requests, approvals), reviewer (reads the audit trail, nothing else), engine, or console (the web console of an engine: name it console and write it to the engine's <data dir>/keys, where serve --console takes it)." enum:"analyst,reviewer,engine,console" default:"analyst"`
}

func (c *keysNewCmd) Run(e *env) error {
	if !analyst.ValidName(c.Name) {
		return fmt.Errorf("name %q: use letters, digits, '.', '_', '@' and '-' (at most 64)", c.Name)
	}
	kp, err := analyst.NewKey()
	if err != nil {
		return err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	seedPath := filepath.Join(c.Out, c.Name+".nk")
	if err := analyst.WriteKeyFile(seedPath, kp); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; not replacing a key", seedPath)
		}
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Out, c.Name+".pub"), []byte(pub+"\n"), 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	section, entry := "analysts", analyst.FileEntry(c.Name, pub)
	if c.Role != "analyst" {
		section, entry = c.Role+"s", fmt.Sprintf("  - name: %s\n    public_key: %s\n", c.Name, pub)
	}
	fmt.Fprintf(e.stdout, "public key: %s\nseed:       %s (keep it secret; give it only to %s; it is also their NATS user: `nats --nkey %s`)\n\nAdd under %q in the analysts file:\n%s",
		pub, seedPath, c.Name, seedPath, section+":", entry)
	return nil
}
