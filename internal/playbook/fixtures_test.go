package playbook

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

	"github.com/responder-sec/responder/internal/event"
)

// The team's public fixtures, read in place (never copied into the repo).
const fixturesDir = "../../../shared/fixtures/public"

func fixtures(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(fixturesDir); err != nil {
		t.Skipf("public fixtures not found at %s (they live in the shared folder beside the checkout): %v", fixturesDir, err)
	}
	return fixturesDir
}

// sekoiaRecord unwraps a SEKOIA test file: the record is a JSON string in input.message.
func sekoiaRecord(t *testing.T, path string) json.RawMessage {
	t.Helper()
	var f struct {
		Input struct {
			Message string `json:"message"`
		} `json:"input"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return json.RawMessage(f.Input.Message)
}

// TestRealExchangeRecords: the forwarding helper on real, anonymised Exchange records.
func TestRealExchangeRecords(t *testing.T) {
	dir := filepath.Join(fixtures(t), "o365-audit", "sekoia-o365")
	cases := map[string][]string{
		"inbox_rule.json":               {"bob@example.org", "joe@example.org"},
		"operation_properties_02.json":  {"user.name@mail.fr"},
		"operation_properties_03.json":  nil, // DeferAction: not forwarding
		"exchange_item_group.json":      nil,
		"user_logged_in.json":           nil,
		"exchange_item_aggregated.json": nil,
	}
	for file, want := range cases {
		raw := sekoiaRecord(t, filepath.Join(dir, file))
		got := ForwardRecipients(&event.Envelope{Raw: raw})
		if !slices.Equal(got, want) {
			t.Errorf("%s: forward recipients %q, want %q", file, got, want)
		}
	}
	// The real New-InboxRule record forwards outside example.onmicrosoft.com,
	// but its UserId is anonymised ("user1"), so there is nobody to act on:
	// the playbook must not fire, and must say why instead of failing silently.
	set := loadShipped(t).WithAllEnabled()
	env, err := event.Normalize("", sekoiaRecord(t, filepath.Join(dir, "inbox_rule.json")))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := set.Match(&env)
	if fired(ms, "external-forwarding-rule") != nil || err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("inbox_rule.json: matches %v, err %v", names(ms), err)
	}
	// With a real user it fires, for both recipients.
	var rec map[string]any
	_ = json.Unmarshal(env.Raw, &rec)
	rec["UserId"] = "user1@example.onmicrosoft.com"
	b, _ := json.Marshal(rec)
	env, _ = event.Normalize("", b)
	ms, err = set.Match(&env)
	m := fired(ms, "external-forwarding-rule")
	if err != nil || m == nil {
		t.Fatalf("inbox_rule.json with a user: %v %v", names(ms), err)
	}
	if got := m.Steps[0].Params["recipients"]; !slices.Equal(toStrings(got), []string{"bob@example.org", "joe@example.org"}) {
		t.Errorf("recipients param %v", got)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

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
	if err := TestRecords(context.Background(), set, bytes.NewReader(data), "tor.json", &out, true); err != nil {
		t.Fatal(err)
	}
	var r RecordResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Source != event.SourceRiskDetection || r.Kind != "anonymizedIPAddress" || r.IP != "178.17.170.23" || len(r.Matches) != 0 {
		t.Errorf("tutorial detection: %+v", r)
	}
	high := bytes.Replace(data, []byte(`"riskLevel": "medium"`), []byte(`"riskLevel": "high"`), 1)
	out.Reset()
	if err := TestRecords(context.Background(), set, bytes.NewReader(high), "tor.json", &out, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"playbook":"high-risk-user"`) || !strings.Contains(out.String(), `"target":{"user":"MyTestUser1@contoso.com"}`) {
		t.Errorf("raised to high: %s", out.String())
	}
}

// TestAllFixturesNoPanic runs every public fixture through TestRecords with
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
		err = TestRecords(context.Background(), set, bytes.NewReader(data), filepath.Base(path), io.Discard, n%2 == 0)
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
// as they ship (enabled ones only) and lists exactly what fires. Only the two
// real Identity Protection detections rated high fire: the anonymised-IP one
// fires high-risk-user; the password spray, still atRisk, fires high-risk-user
// and password-spray-success. The real forwarding records name no user (anonymised),
// so external-forwarding-rule reports that instead of firing. Everything else
// (sign-ins, directory audits, Graph responses, the tutorial's medium
// detection, the risky-user and Set-Mailbox system noise) fires nothing.
func TestRealRecordsFireAsShipped(t *testing.T) {
	root := fixtures(t)
	set := loadShipped(t)
	const noUser = `playbook "external-forwarding-rule": step 1 (delete_forward_rules): the event has no user to act on`
	want := map[string]string{
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#0": "high-risk-user",
		"graph/elastic-integrations-azure-identity-protection/test-userriskevents-raw.log#1": "high-risk-user,password-spray-success",
		"o365-audit/sekoia-o365/inbox_rule.json#0":                                           "error: " + noUser,
		"o365-audit/sekoia-o365/operation_properties_02.json#0":                              "error: " + noUser,
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
		_ = TestRecords(context.Background(), set, bytes.NewReader(data), rel, &out, true)
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
