package m365

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const fakePEM = "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n"

func TestReadCertPEMRefusesFilesOthersCanRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix modes")
	}
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602} {
		p := filepath.Join(dir, "cert-"+mode.String()+".pem")
		if err := os.WriteFile(p, []byte(fakePEM), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		b, err := ReadCertPEM(p)
		if err == nil || b != nil {
			t.Fatalf("mode %v: read %d bytes, err %v; want a refusal", mode, len(b), err)
		}
		if !strings.Contains(err.Error(), "readable by others") || !strings.Contains(err.Error(), p) {
			t.Errorf("mode %v: %v", mode, err)
		}
		if strings.Contains(err.Error(), "TOP-SECRET") {
			t.Errorf("mode %v: the key material is in the error", mode)
		}
	}
	p := filepath.Join(dir, "ok.pem")
	if err := os.WriteFile(p, []byte(fakePEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadCertPEM(p); err != nil || string(b) != fakePEM {
		t.Fatalf("mode 0600: %v", err)
	}
	if _, err := ReadCertPEM(dir); err == nil {
		t.Fatal("a directory was accepted")
	}
	if _, err := ReadCertPEM(filepath.Join(dir, "missing.pem")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}
