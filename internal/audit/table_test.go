package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTable(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 5, time.UTC)
	recs := []Record{
		{
			Seq: 1, ID: "11111111-1111-4111-8111-111111111111", Time: at,
			Actor: Actor{Kind: "analyst", Name: "bob@contoso.com"}, Action: "disable_user",
			Target: map[string]string{"user": "alice@contoso.com"}, Outcome: Succeeded, Detail: "disabled",
		},
		{
			Seq: 22, ID: "22222222-2222-4222-8222-222222222222", Time: at.Add(time.Hour),
			Actor:   Actor{Kind: "playbook", Name: "a-playbook-with-a-very-long-name-indeed"},
			Action:  "delete_inbox_rule",
			Target:  map[string]string{"rule_id": "r1", "user": "eve@contoso.com"},
			Outcome: Failed, ErrorCode: "ErrorAccessDenied",
			Detail: "\x1b]0;pwned\x07\x1b[2J evil\u202eosla.exe\nnext line\xff " + strings.Repeat("x", 80),
		},
		{Seq: 3, ID: "33333333-3333-4333-8333-333333333333", Time: at, Outcome: Accepted},
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, recs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want a header and 3 rows:\n%s", len(lines), out)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e\r") || !utf8.ValidString(out) {
		t.Errorf("control characters reached the terminal: %q", out)
	}
	// Every row has its id at the same column as the header's ID.
	col := strings.Index(lines[0], "ID")
	for i, l := range lines[1:] {
		if got := utf8.RuneCountInString(l[:strings.Index(l, recs[i].ID)]); got != col {
			t.Errorf("row %d: id at column %d, header at %d\n%s", i+1, got, col, out)
		}
	}
	for _, want := range []string{
		"     1  2025-03-01T12:00:00Z  analyst:bob@contoso.com ",
		"alice@contoso.com",
		"eve@contoso.com,r1",
		"playbook:a-playbook-wit…  delete_inbox_rule",
		"[ErrorAccessDenied] ?]0;pwned??[2J evil?osla.ex…  2222",
		"accepted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Empty values print as "-".
	if !strings.Contains(lines[3], "  -  ") {
		t.Errorf("empty cells: %q", lines[3])
	}

	if got := printable("a\nb\tc\r\xffd\u200be\u2066f\u00e9\ufffd"); got != "a b c ?d?e?f\u00e9\ufffd" {
		t.Errorf("printable = %q", got)
	}

	// Streaming: the header once, rows as they come.
	buf.Reset()
	tb := NewTable(&buf)
	for _, r := range recs[:2] {
		if err := tb.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "OUTCOME"); n != 1 {
		t.Errorf("header printed %d times", n)
	}
}
