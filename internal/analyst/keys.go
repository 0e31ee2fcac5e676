package analyst

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/nats-io/nkeys"
)

// Key files in a data directory.
const (
	KeysDir       = "keys"
	AdminKeyFile  = "admin.nk"
	EngineKeyFile = "engine.nk"
	// LocalAdminName and LocalEngineName name the local keys in the audit trail.
	LocalAdminName  = "local-admin"
	LocalEngineName = "local-engine"
)

// ErrNoKey: there is no key file where one was expected.
var ErrNoKey = errors.New("analyst: no key")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidName reports whether s can name an analyst and its key files: letters,
// digits, '.', '_', '@', '-', at most 64, starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// NewKey makes a new Ed25519 key pair (an nkeys user key).
func NewKey() (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("analyst: new key: %w", err)
	}
	return kp, nil
}

// WriteKeyFile writes kp's seed to path with mode 0600, creating the directory
// (0700). It never replaces an existing file: the write goes to a temporary file
// that is then hard-linked into place, so a concurrent reader never sees half a
// key and two processes racing keep one key.
func WriteKeyFile(path string, kp nkeys.KeyPair) error {
	kseed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("analyst: key seed: %w", err)
	}
	// kp may share kseed's memory: wipe only our copy.
	seed := append(make([]byte, 0, len(kseed)+1), kseed...)
	defer wipe(seed)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("analyst: key directory: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("analyst: write key file: %w", err)
	}
	defer os.Remove(tmp)
	_, werr := f.Write(append(seed, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("analyst: write key file %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("analyst: key file %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("analyst: write key file %s: %w", path, err)
	}
	return nil
}

// ReadKeyFile reads a seed written by WriteKeyFile (or `nsc`, or any file
// holding one seed, optionally decorated). On Unix it refuses a file that
// group or others may read, as ssh does.
func ReadKeyFile(path string) (nkeys.KeyPair, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", ErrNoKey, path)
		}
		return nil, fmt.Errorf("analyst: key file: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("analyst: key file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("analyst: key file: %w", err)
	}
	defer wipe(b)
	// The key pair may keep the slice it was made from: give it its own copy.
	kp, err := nkeys.ParseDecoratedNKey(bytes.Clone(b))
	if err != nil {
		kp, err = nkeys.FromSeed(bytes.Clone(bytes.TrimSpace(b)))
	}
	if err != nil {
		// Never include the file's content.
		return nil, fmt.Errorf("analyst: key file %s does not hold an nkey seed", path)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("analyst: key file %s holds a public key, not a seed", path)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("analyst: key file %s does not hold a user seed (SU…)", path)
	}
	return kp, nil
}

// ensureKey returns the key at path, creating it when missing.
func ensureKey(path string) (nkeys.KeyPair, bool, error) {
	kp, err := ReadKeyFile(path)
	if err == nil {
		return kp, false, nil
	}
	if !errors.Is(err, ErrNoKey) {
		return nil, false, err
	}
	kp, err = NewKey()
	if err != nil {
		return nil, false, err
	}
	if err := WriteKeyFile(path, kp); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			kp, err := ReadKeyFile(path)
			return kp, false, err
		}
		return nil, false, err
	}
	return kp, true, nil
}

// AdminKeyPath is where the local administrator key of dataDir lives.
func AdminKeyPath(dataDir string) string { return filepath.Join(dataDir, KeysDir, AdminKeyFile) }

// EngineKeyPath is where the engine key of dataDir lives.
func EngineKeyPath(dataDir string) string { return filepath.Join(dataDir, KeysDir, EngineKeyFile) }

// EnsureLocalAdmin returns the local administrator key of a data directory,
// creating it on first use (created reports that). The engine calls it at start
// so that act, approve and the other commands on the same machine sign with it
// by default (see LoadDefaultKey).
func EnsureLocalAdmin(dataDir string) (kp nkeys.KeyPair, created bool, err error) {
	return ensureKey(AdminKeyPath(dataDir))
}

// EnsureEngineKey returns the engine key of a data directory, creating it on
// first use. The engine signs playbook requests and relayed requests with it.
func EnsureEngineKey(dataDir string) (kp nkeys.KeyPair, created bool, err error) {
	return ensureKey(EngineKeyPath(dataDir))
}

// LoadDefaultKey returns the key a command-line client signs with when no key
// file is named: the local administrator key of dataDir.
func LoadDefaultKey(dataDir string) (nkeys.KeyPair, error) {
	kp, err := ReadKeyFile(AdminKeyPath(dataDir))
	if errors.Is(err, ErrNoKey) {
		return nil, fmt.Errorf("%w: no local administrator key in %s (start `responder serve` with this data directory once, or pass --key)", ErrNoKey, dataDir)
	}
	return kp, err
}

// LocalDirectory is the directory an engine uses when no analysts file is
// configured: the local administrator (every action, may approve) and the
// local engine key.
func LocalDirectory(adminPublicKey, enginePublicKey string) (*Directory, error) {
	return NewDirectory(
		Analyst{Name: LocalAdminName, PublicKey: adminPublicKey, Role: RoleAnalyst, Actions: []string{AllActions}, MayApprove: true},
		Analyst{Name: LocalEngineName, PublicKey: enginePublicKey, Role: RoleEngine},
	)
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
