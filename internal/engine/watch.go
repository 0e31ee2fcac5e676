package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultPlaybookWatch is how often the engine looks for changed playbook
// files when Config.PlaybookWatch is zero.
const DefaultPlaybookWatch = 2 * time.Second

// dirFingerprint is a digest of every regular file under dir (the playbooks,
// their IP lists and Sigma rules kept beside them): path, size and content.
// Content rather than modification time, so that an editor's save that
// leaves the text as it was, or a Kubernetes ConfigMap swapping its symlink
// to identical data, is not a change, and a change within the file system's
// time resolution is.
func dirFingerprint(dir string) ([sha256.Size]byte, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Hidden directories (.git, ConfigMap's ..data timestamps) hold
			// nothing the loader reads.
			if path != dir && len(d.Name()) > 0 && d.Name()[0] == '.' {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := os.Stat(path) // follows symlinks, as the loader does
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking: the next look sees it
			}
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, info.Size())
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		h.Write([]byte{0})
		return nil
	})
	var sum [sha256.Size]byte
	if err != nil {
		return sum, fmt.Errorf("engine: read %s: %w", dir, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// watchPlaybooks reloads the playbooks when the files under PlaybookDir
// change, until ctx ends. A refused set is logged once per change (the files
// are not reloaded again until they change again) and the last good set
// stays; a directory that cannot be read is logged and retried.
func (e *Engine) watchPlaybooks(ctx context.Context) error {
	every := e.cfg.PlaybookWatch
	if every < 0 {
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
		fp, err := dirFingerprint(e.cfg.PlaybookDir)
		if err != nil {
			e.log.Warn("playbook watch: cannot read the playbook directory", "err", err)
			continue
		}
		e.pbMu.Lock()
		same := fp == e.pbPrint
		e.pbMu.Unlock()
		if same {
			continue
		}
		// ReloadPlaybooks records the files it read: a refused set is not
		// tried again until the files change again.
		if err := e.ReloadPlaybooks(); err != nil {
			e.log.Error("playbook files changed: reload refused, keeping the last good set", "err", err)
			continue
		}
		e.log.Info("playbook files changed: playbooks reloaded", "count", len(e.Playbooks().Playbooks()))
	}
}
