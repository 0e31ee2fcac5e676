package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesAReadableClientCertificate: the PEM holds the
// application's private key; when others may read it serve stops with an
// error naming the setting, and neither the key nor a secret is printed.
func TestServeRefusesAReadableClientCertificate(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	pem := filepath.Join(dir, "app.pem")
	const key = "-----BEGIN PRIVATE KEY-----\nPRIVATE-KEY-MATERIAL-xyz\n-----END PRIVATE KEY-----\n"
	if err := os.WriteFile(pem, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--data-dir", t.TempDir(), "--tenant-id", "t", "--client-id", "c", "--client-cert", pem}, "RESPONDER_CLIENT_CERT"},
		{[]string{"serve", "--sandbox", "--data-dir", t.TempDir(), "--never-block", "203.0.113.0/24,not-a-range"}, "RESPONDER_NEVER_BLOCK"},
		{[]string{"serve", "--sandbox", "--data-dir", t.TempDir(), "--ops-token", "s3cr3t-short"}, "RESPONDER_OPS_TOKEN"},
		// A setting no action declares (misspelt) stops serve: it must not
		// leave a guard off silently.
		{[]string{"serve", "--sandbox", "--data-dir", t.TempDir(), "--action-setting", "disable_user.alowed_groups=g1"}, "--action-setting"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error naming %q", c.args, code, errb.String(), c.want)
		}
		for _, secret := range []string{"PRIVATE-KEY-MATERIAL", "s3cr3t-short"} {
			if strings.Contains(errb.String()+out.String(), secret) {
				t.Errorf("%v: %q appears in the output", c.args, secret)
			}
		}
	}
	if !strings.Contains(func() string {
		var out, errb bytes.Buffer
		run(cases[0].args, &out, &errb)
		return errb.String()
	}(), "readable by others") {
		t.Error("the error does not say why")
	}
}

func TestParseRanges(t *testing.T) {
	got, err := parseRanges("203.0.113.0/24, 198.51.100.7,2001:db8::/32")
	if err != nil || len(got) != 3 || got[1].String() != "198.51.100.7/32" {
		t.Fatal(got, err)
	}
	if _, err := parseRanges("203.0.113.0/24,evil"); err == nil {
		t.Fatal("a bad range was accepted")
	}
}
