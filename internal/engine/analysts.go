package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/responder-sec/responder/internal/analyst"
)

// loadDirectory builds the analysts directory: the analysts file with the
// engine's own key added (unless the file lists it as an engine already, as
// one file shared by every replica does), or, with no file, the local
// administrator and the engine key of the data directory.
func loadDirectory(file, adminPub, enginePub, consolePub string) (*analyst.Directory, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if file == "" {
		d, err := analyst.LocalDirectory(adminPub, enginePub)
		if err != nil {
			return nil, sum, fmt.Errorf("engine: local analysts: %w", err)
		}
		return withConsole(d, consolePub)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, sum, fmt.Errorf("engine: analysts file: %w", err)
	}
	sum = sha256.Sum256(b)
	d, err := analyst.Parse(b)
	if err != nil {
		return nil, sum, fmt.Errorf("engine: analysts file %s: %w", file, err)
	}
	if a, ok := d.Lookup(enginePub); !ok || a.Role != analyst.RoleEngine {
		if d, err = d.With(analyst.Analyst{Name: analyst.LocalEngineName, PublicKey: enginePub, Role: analyst.RoleEngine}); err != nil {
			return nil, sum, fmt.Errorf("engine: analysts file %s: %w", file, err)
		}
	}
	d, _, err = withConsole(d, consolePub)
	if err != nil {
		return nil, sum, fmt.Errorf("engine: analysts file %s: %w", file, err)
	}
	return d, sum, nil
}

// withConsole trusts this process's console key (Config.ConsoleKey) as a
// console unless the directory lists it already; the people it may speak
// for are still only those of the analysts file.
func withConsole(d *analyst.Directory, consolePub string) (*analyst.Directory, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if consolePub == "" {
		return d, sum, nil
	}
	if a, ok := d.Lookup(consolePub); ok {
		if a.Role != analyst.RoleConsole {
			return nil, sum, fmt.Errorf("the console key %s is listed as %s %q; list it under consoles", consolePub, a.Role, a.Name)
		}
		return d, sum, nil
	}
	d, err := d.With(analyst.Analyst{Name: analyst.LocalConsoleName, PublicKey: consolePub, Role: analyst.RoleConsole})
	return d, sum, err
}

// Directory is the analysts directory in force.
func (e *Engine) Directory() *analyst.Directory { return e.directory.Load() }

// ReloadAnalysts reads the analysts file again. The new directory takes effect
// at once for signatures, approvals and audit queries, and the embedded NATS
// server's users change with it: a key no longer listed is disconnected and
// refused from then on. An invalid file is refused and the last good
// directory stays. Without an analysts file it does nothing.
func (e *Engine) ReloadAnalysts() error {
	e.anMu.Lock()
	defer e.anMu.Unlock()
	if e.cfg.AnalystsFile == "" {
		return nil
	}
	d, sum, err := loadDirectory(e.cfg.AnalystsFile, e.adminPub, e.enginePub, e.cfg.ConsoleKey)
	if sum != ([sha256.Size]byte{}) {
		e.anPrint = sum // a refused file is not tried again until it changes
	}
	if err != nil {
		return fmt.Errorf("%w (keeping the last good analysts)", err)
	}
	// The server first: a removed key must not keep a connection while the
	// verifier already refuses it, nor the reverse.
	if err := e.bus.SetIdentities(d.BusIdentities()); err != nil {
		return fmt.Errorf("engine: analysts file %s not applied: %w", e.cfg.AnalystsFile, err)
	}
	e.directory.Store(d)
	return nil
}

// watchAnalysts reloads the analysts file when its content changes, as the
// playbook watcher does, until ctx ends.
func (e *Engine) watchAnalysts(ctx context.Context) error {
	every := e.cfg.PlaybookWatch
	if every < 0 || e.cfg.AnalystsFile == "" {
		<-ctx.Done()
		return nil
	}
	if every == 0 {
		every = DefaultPlaybookWatch
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		b, err := os.ReadFile(e.cfg.AnalystsFile)
		if err != nil {
			e.log.Warn("analysts watch: cannot read the analysts file", "err", err)
			continue
		}
		sum := sha256.Sum256(b)
		e.anMu.Lock()
		same := bytes.Equal(sum[:], e.anPrint[:])
		e.anMu.Unlock()
		if same {
			continue
		}
		if err := e.ReloadAnalysts(); err != nil {
			e.log.Error("analysts file changed: reload refused", "err", err)
			continue
		}
		e.log.Info("analysts file changed: analysts reloaded", "keys", len(e.Directory().All()))
	}
}
