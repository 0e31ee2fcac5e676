package playbook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/event"
)

// The team's public fixtures, read in place (never copied into the repo).
const fixturesDir = "../../../shared/fixtures/public"

// fixtures returns the public fixtures folder; CI runs beside it, so its
// absence fails the test instead of skipping it.
func fixtures(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(fixturesDir); err != nil {
		t.Fatalf("public fixtures not found at %s (they live in the shared folder beside the checkout): %v", fixturesDir, err)
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
