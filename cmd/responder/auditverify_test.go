package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/engine"
)

// TestAuditExportAndVerify runs `audit export` and `audit verify` against a
// running engine as an operator would, then plays the attacker on the export
// file and on the anchors.
func TestAuditExportAndVerify(t *testing.T) {
	_, dataDir, eng, ctx := runningEngine(t, func(c *engine.Config) {
		c.Feeds = []string{engine.FeedRiskDetections}
		c.RiskInterval = time.Hour
	})
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--data-dir", dataDir), &out, &errb)
		return code, out.String(), errb.String()
	}
	// Records to verify: an analyst's action (accepted, then its outcome).
	if code, out, errs := cli("act", "revoke-sessions", "--user", "bob@contoso.com", "--reason", "phished", "--wait", "10s", "--json"); code != 0 && !strings.Contains(errs, "no outcome") {
		t.Fatalf("act: exit %d: %s %s", code, out, errs)
	}

	code, out, errs := cli("audit", "verify")
	verified := out
	if code != 0 || !strings.Contains(out, "verified") || !strings.Contains(out, "signed by trusted engine keys") {
		t.Fatalf("audit verify: exit %d: %s %s", code, out, errs)
	}

	// The engine writes its head just after each record: an export right after
	// the last one may find none yet, or one that covers only the earlier
	// records, and says so.
	export := filepath.Join(t.TempDir(), "audit.jsonl")
	for range 100 {
		code, out, errs = cli("audit", "export", "-o", export)
		if !strings.Contains(errs, "no signed head") && !strings.Contains(errs, "left to the next export") {
			break
		}
	}
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s %s", code, out, errs)
	}
	data, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-1], `{"type":"audit_head"`) {
		t.Fatalf("export does not end with a head: %q (export said %q %q; verify said %q)", lines[len(lines)-1], out, errs, verified)
	}
	if code, out, errs := cli("audit", "verify", "--file", export); code != 0 || !strings.Contains(out, "export head") {
		t.Fatalf("audit verify --file: exit %d: %s %s", code, out, errs)
	}
	head, err := audit.ParseHead([]byte(lines[len(lines)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli("audit", "verify", "--expect-head", head.Hash); code != 0 {
		t.Fatalf("audit verify --expect-head (the export's head): exit %d: %s %s", code, out, errs)
	}

	write := func(lines []string) string {
		p := filepath.Join(t.TempDir(), "edited.jsonl")
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	n := len(lines)
	attacks := []struct {
		name string
		args []string
		want string
	}{
		{"tail truncated export", []string{"audit", "verify", "--file", write(append(append([]string{}, lines[:n-2]...), lines[n-1]))}, "dropped"},
		{"export without its head", []string{"audit", "verify", "--file", write(lines[:n-1])}, "without a signed head"},
		{"--expect-head with a wrong hash", []string{"audit", "verify", "--expect-head", strings.Repeat("0", 64)}, "no record has hash"},
		{"a head the engine never had", []string{"audit", "verify", "--expect-head", "999:" + head.Hash}, "ends at seq"},
	}
	for _, a := range attacks {
		code, out, errs := cli(a.args...)
		if code != 4 || !strings.Contains(errs, "BROKEN") || !strings.Contains(errs, a.want) {
			t.Errorf("%s: exit %d, %s %s; want exit 4 naming %q", a.name, code, out, errs, a.want)
		}
	}

	// With the engine's own access to NATS but not its key: a record chained
	// to the tail, signed by another key, is named.
	js := eng.Bus().JS
	st, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetMsg(ctx, st.CachedInfo().State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	var tail audit.Record
	if err := json.Unmarshal(last.Data, &tail); err != nil {
		t.Fatal(err)
	}
	mallory, _ := nkeys.CreateUser()
	malloryPub, _ := mallory.PublicKey()
	forged := audit.Record{ID: "forged", Seq: tail.Seq + 1, Time: tail.Time.Add(time.Second), TenantID: tail.TenantID, Action: "disable_user",
		Target: map[string]string{"user": "ceo@contoso.com"}, Actor: audit.Actor{Kind: "analyst", Name: "local-admin"},
		Outcome: audit.Denied, PrevHash: tail.Hash, Signer: malloryPub}
	forged.Hash, _ = forged.ComputeHash()
	sig, _ := mallory.Sign([]byte("responder.audit.record.v1\n" + forged.Hash))
	forged.Sig = base64.RawURLEncoding.EncodeToString(sig)
	data, _ = json.Marshal(forged)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: bus.AuditSubject(forged.TenantID, string(forged.Outcome), forged.Action), Data: data},
		jetstream.WithExpectLastSequence(tail.Seq)); err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli("audit", "verify")
	if code != 4 || !strings.Contains(errs, "forged") || !strings.Contains(errs, "not appended by a trusted engine") {
		t.Errorf("verify after a forged record: exit %d, %s %s", code, out, errs)
	}

	// The stream deleted and recreated empty: the kept heads show it, and the
	// engine appends nothing to the new stream.
	cfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, bus.StreamAudit); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli("audit", "verify")
	if code != 4 || !strings.Contains(errs, "ends at seq 0") || !strings.Contains(errs, "head") {
		t.Errorf("verify after the stream was recreated: exit %d, %s %s", code, out, errs)
	}
	cli("act", "revoke-sessions", "--user", "alice@contoso.com", "--reason", "after the wipe", "--wait", "3s")
	if st, err := js.Stream(ctx, bus.StreamAudit); err != nil || st.CachedInfo().State.Msgs != 0 {
		t.Errorf("the engine appended to the recreated stream: %v", err)
	}
}
