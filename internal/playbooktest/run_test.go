package playbooktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
	"github.com/responder-sec/responder/internal/playbook"
)

// The team's public fixtures, read in place (never copied into the repo).
const fixturesDir = "../../../shared/fixtures/public"

// fixtures returns the public fixtures folder; CI runs beside it, so its
// absence is a failure, not a skip.
func fixtures(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(fixturesDir); err != nil {
		t.Fatalf("public fixtures not found at %s (they live in the shared folder beside the checkout): %v", fixturesDir, err)
	}
	return fixturesDir
}

const shippedDir = "../../playbooks"

// testDomains are the verified domains the shipped samples are written for.
var testDomains = []string{"contoso.com", "contoso.onmicrosoft.com"}

func loadShipped(t testing.TB) *playbook.Set {
	t.Helper()
	s, err := playbook.LoadDir(shippedDir, playbook.LoadOptions{VerifiedDomains: testDomains, BaseDir: shippedDir})
	if err != nil {
		t.Fatalf("LoadDir(%s): %v", shippedDir, err)
	}
	return s
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

const mfaThenSuccess = `name: mfa-then-success
enabled: true
trigger:
  source: signin
  kind: failure
  when:
    - {field: raw.status.errorCode, equals: 500121}
  threshold:
    count: 10
    by: user
    window: 10m
    then: {kind: success}
steps: [{action: revoke_sessions}]
`

func signinEnv(id, user, ip string, code int, at time.Time) *event.Envelope {
	kind := event.KindSignInSuccess
	if code != 0 {
		kind = event.KindSignInFailure
	}
	raw := fmt.Sprintf(`{"id":%q,"createdDateTime":%q,"userPrincipalName":%q,"ipAddress":%q,"status":{"errorCode":%d}}`, id, at.Format(time.RFC3339), user, ip, code)
	return &event.Envelope{ID: id, Source: event.SourceSignIn, Kind: kind, Time: at, User: user, IP: ip, Raw: json.RawMessage(raw)}
}

const forwardingPlaybook = `name: t
enabled: true
trigger:
  source: audit
  when:
    - {field: forward_recipients, exists: true}
steps:
  - action: revoke_sessions
`

// TestRealGraphRecords: the Tor detection from Microsoft's own tutorial is
// medium risk, so high-risk-user must not fire on it; raised to high it does.
func TestRealGraphRecords(t *testing.T) {
	path := filepath.Join(fixtures(t), "graph", "ms-graph-docs", "concepts_tutorial-riskdetection-api.md.response-riskDetections-atRisk.json")
	set := loadShipped(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Run(context.Background(), set, bytes.NewReader(data), "tor.json", &out, true); err != nil {
		t.Fatal(err)
	}
	var r RecordResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Source != event.SourceRiskDetection || r.Kind != "anonymizedIPAddress" || r.IP != "178.17.170.23" ||
		len(r.Matches) != 1 || r.Matches[0].Playbook != "risky-detection-anonymous-ip" {
		t.Errorf("tutorial detection: %+v", r)
	}
	high := bytes.Replace(data, []byte(`"riskLevel": "medium"`), []byte(`"riskLevel": "high"`), 1)
	out.Reset()
	if err := Run(context.Background(), set, bytes.NewReader(high), "tor.json", &out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"playbook":"high-risk-user"`) || !strings.Contains(out.String(), `"target":{"user":"MyTestUser1@contoso.com"}`) {
		t.Errorf("raised to high: %s", out.String())
	}
}

// TestAllFixturesNoPanic runs every public fixture through Run with
// every shipped playbook enabled: nothing may panic, and only files that are
// not valid JSON as published may stop with an error.
func TestAllFixturesNoPanic(t *testing.T) {
	root := fixtures(t)
	set := loadShipped(t).WithAllEnabled()
	var n int
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".log")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(path, "sekoia") {
			var f struct {
				Input struct{ Message string } `json:"input"`
			}
			if json.Unmarshal(data, &f) == nil && f.Input.Message != "" {
				data = []byte(f.Input.Message)
			}
		}
		n++
		err = Run(context.Background(), set, bytes.NewReader(data), filepath.Base(path), io.Discard, n%2 == 0)
		if err != nil && json.Valid(data) && !strings.HasSuffix(path, ".log") {
			t.Errorf("%s: %v", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Errorf("only %d fixture files read", n)
	}
}

// TestRealRecordsFireAsShipped runs every public fixture through the playbooks
// as they ship (enabled ones only) and lists exactly what fires. The two
// real Identity Protection detections rated high fire high-risk-user; the
// anonymised-IP ones (high, and the tutorial's medium) fire
// risky-detection-anonymous-ip; the password spray, still atRisk, fires
// password-spray-success. The real forwarding records name their mailbox but
// not the actor (anonymised), so external-forwarding-rule reports that
// instead of firing. Everything else (sign-ins, directory audits, Graph
// responses, the risky-user and Set-Mailbox system noise) fires nothing.
func TestRealRecordsFireAsShipped(t *testing.T) {
	root := fixtures(t)
	set := loadShipped(t)
	const noUser = `playbook "external-forwarding-rule": step 2 (revoke_sessions): the event has no user to act on`
	want := map[string]string{
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#0":               "high-risk-user,risky-detection-anonymous-ip",
		"graph/ms-graph-docs/concepts_tutorial-riskdetection-api.md.response-riskDetections-atRisk.json#0": "risky-detection-anonymous-ip",
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#1":               "high-risk-user,password-spray-success",
		"o365-audit/sekoia-o365/inbox_rule.json#0":                                                         "error: " + noUser,
		"o365-audit/sekoia-o365/operation_properties_02.json#0":                                            "error: " + noUser,
	}
	got := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".log")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(path, "sekoia") {
			var f struct {
				Input struct{ Message string } `json:"input"`
			}
			if json.Unmarshal(data, &f) == nil && f.Input.Message != "" {
				data = []byte(f.Input.Message)
			}
		}
		rel, _ := filepath.Rel(root, path)
		var out bytes.Buffer
		_ = Run(context.Background(), set, bytes.NewReader(data), rel, &out, true)
		dec := json.NewDecoder(&out)
		for dec.More() {
			var r RecordResult
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			key := fmt.Sprintf("%s#%d", filepath.ToSlash(rel), r.Index)
			switch {
			case len(r.Matches) > 0:
				var ps []string
				for _, m := range r.Matches {
					ps = append(ps, m.Playbook)
				}
				slices.Sort(ps)
				got[key] = strings.Join(ps, ",")
			case r.Error != "" && strings.HasPrefix(r.Error, "playbook "):
				got[key] = "error: " + r.Error
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q", k, g)
		}
	}
}

func TestRunJSON(t *testing.T) {
	set := loadShipped(t)
	in := `{"@odata.context":"x","value":[` + mustRead(t, filepath.Join(shippedDir, "testdata", "high-risk-user.fires.json")) + `,` +
		mustRead(t, filepath.Join(shippedDir, "testdata", "high-risk-user.benign.json")) + `]}` + "\n" + `{"hello":1}`
	var out bytes.Buffer
	if err := Run(context.Background(), set, strings.NewReader(in), "in.json", &out, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d:\n%s", len(lines), out.String())
	}
	var r0, r1, r2 RecordResult
	for i, p := range []*RecordResult{&r0, &r1, &r2} {
		if err := json.Unmarshal([]byte(lines[i]), p); err != nil {
			t.Fatal(err)
		}
	}
	if r0.Source != event.SourceRiskDetection || r0.User != "meganb@contoso.com" || r0.IP != "198.51.100.23" || r0.Index != 0 || r0.File != "in.json" {
		t.Errorf("record 0: %+v", r0)
	}
	// The sample is an anonymizedIPAddress detection rated high: high-risk-user
	// and risky-detection-anonymous-ip both answer it.
	if len(r0.Matches) != 2 || r0.Matches[0].Playbook != "high-risk-user" || len(r0.Matches[0].Actions) != 3 ||
		r0.Matches[0].Actions[0].Target.User != "meganb@contoso.com" || r0.Matches[1].Playbook != "risky-detection-anonymous-ip" {
		t.Errorf("record 0 matches: %+v", r0.Matches)
	}
	if r1.Index != 1 || len(r1.Matches) != 0 || !strings.Contains(lines[1], `"matches":[]`) {
		t.Errorf("record 1: %s", lines[1])
	}
	if r2.Index != 2 || r2.Error == "" {
		t.Errorf("record 2 should be an unrecognised shape: %s", lines[2])
	}
}

// TestRunTimeOrder: `playbook test` evaluates thresholds over the
// records in time order, whatever their order in the input.
func TestRunTimeOrder(t *testing.T) {
	set, err := playbook.Load("t.yaml", []byte(mfaThenSuccess), playbook.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	in.WriteString(string(signinEnv("ok", "alice@contoso.com", "198.51.100.1", 0, t0.Add(time.Minute)).Raw) + "\n")
	for i := 9; i >= 0; i-- {
		in.WriteString(string(signinEnv(fmt.Sprint("d", i), "alice@contoso.com", "198.51.100.1", 500121, t0.Add(time.Duration(i)*time.Second)).Raw) + "\n")
	}
	var out strings.Builder
	if err := Run(context.Background(), set, strings.NewReader(in.String()), "in.json", &out, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 11 || !strings.Contains(lines[10], `"index":0`) || !strings.Contains(lines[10], "mfa-then-success") {
		t.Errorf("output:\n%s", out.String())
	}
}

// FuzzRun: any input stream is read without panicking.
func FuzzRun(f *testing.F) {
	f.Add([]byte(`{"value":[{"id":"1","createdDateTime":"2026-01-01T00:00:00Z","status":{"errorCode":0}}]}`))
	f.Add([]byte(`[{"CreationTime":"2026-01-01T00:00:00","Id":"x","Operation":"New-InboxRule"}]` + "\n{}\n"))
	f.Add([]byte(`{"value":{"a":[1,{"b":2}]},"x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := playbook.Load("p.yaml", []byte(forwardingPlaybook), playbook.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = Run(context.Background(), set, bytes.NewReader(data), "f", io.Discard, true)
	})
}
