package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestExportJSONLIsTheStoredRecords(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	recs := appendN(t, ctx, w, 5)

	lines := exportLines(t, ctx, b.JS, Filter{})
	if len(lines) != len(recs) {
		t.Fatalf("%d lines, want %d", len(lines), len(recs))
	}
	for i, l := range lines {
		want, _ := json.Marshal(recs[i])
		if l != string(want) {
			t.Errorf("line %d:\n%s\nwant\n%s", i+1, l, want)
		}
	}
	// "" is jsonl too.
	var buf bytes.Buffer
	if err := Export(ctx, b.JS, Filter{}, "", &buf); err != nil || buf.String() != strings.Join(lines, "\n")+"\n" {
		t.Errorf("Export with format \"\": %v", err)
	}
	one := exportLines(t, ctx, b.JS, Filter{Target: "user3@contoso.com"})
	if len(one) != 1 || one[0] != lines[3] {
		t.Errorf("filtered export = %q, want line 4 only", one)
	}
	if err := Export(ctx, b.JS, Filter{}, "xml", &buf); !errors.Is(err, ErrFormat) {
		t.Errorf("Export(xml) = %v, want ErrFormat", err)
	}
}

func TestExportCSV(t *testing.T) {
	ctx := testCtx(t)
	b := openBus(t)
	w := NewWriter(b.JS, WriterOptions{Logger: quiet})
	r := sample(0)
	r.Detail = `=HYPERLINK("http://evil.example","click")`
	r.Target = map[string]string{"user": "alice@contoso.com", "ip": "203.0.113.7"}
	r.GraphRequestIDs = []string{"g1", "g2"}
	stored, err := w.Append(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	other := sample(1)
	other.Outcome = Failed
	other.Detail = "line one\nline two, with \"quotes\""
	if _, err := w.Append(ctx, other); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := Export(ctx, b.JS, Filter{}, FormatCSV, &buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("the export is not CSV: %v", err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("rows = %q", rows)
	}
	col := func(row []string, name string) string {
		for i, h := range csvHeader {
			if h == name {
				return row[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	first := rows[1]
	for name, want := range map[string]string{
		"seq":               "1",
		"time":              stored.Time.Format("2006-01-02T15:04:05.999999999Z07:00"),
		"detail":            `'=HYPERLINK("http://evil.example","click")`,
		"target":            "ip=203.0.113.7;user=alice@contoso.com",
		"actor_kind":        "playbook",
		"outcome":           "succeeded",
		"graph_request_ids": "g1 g2",
		"id":                stored.ID,
		"hash":              stored.Hash,
	} {
		if got := col(first, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := col(rows[2], "detail"); got != other.Detail {
		t.Errorf("multi-line detail = %q", got)
	}

	buf.Reset()
	if err := Export(ctx, b.JS, Filter{Outcome: "failed"}, FormatCSV, &buf); err != nil {
		t.Fatal(err)
	}
	if rows, _ := csv.NewReader(&buf).ReadAll(); len(rows) != 2 || col(rows[1], "outcome") != "failed" {
		t.Errorf("filtered CSV = %q", rows)
	}
}

func TestDefuseCell(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"plain":    "plain",
		"=1+1":     "'=1+1",
		"+1":       "'+1",
		"-1":       "'-1",
		"@SUM(A1)": "'@SUM(A1)",
		"\tx":      "'\tx",
		"a=b":      "a=b",
	} {
		if got := defuseCell(in); got != want {
			t.Errorf("defuseCell(%q) = %q, want %q", in, got, want)
		}
	}
}
