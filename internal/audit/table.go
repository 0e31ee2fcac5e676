package audit

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Column widths of the table, in characters. Fixed, so that rows can be printed as
// they are read: no buffering of the whole trail to measure it. Longer values are
// cut with an ellipsis; the id, last, is never cut.
const (
	widthSeq     = 6
	widthTime    = 20 // 2006-01-02T15:04:05Z
	widthActor   = 24
	widthAction  = 20
	widthTarget  = 30
	widthOutcome = 16
	widthDetail  = 48
)

// Table prints records for a terminal, one aligned line each, as they come: the
// printer for `audit list`. Every value is made safe to print first: control
// characters (including terminal escape sequences), Unicode format characters
// (bidirectional overrides, zero-width characters) and invalid UTF-8 become '?',
// and line breaks become spaces, so a record cannot rewrite the screen or pass
// one name off as another. A Table is not safe for concurrent use.
type Table struct {
	w      io.Writer
	header bool
}

// NewTable returns a Table writing to w.
func NewTable(w io.Writer) *Table { return &Table{w: w} }

// WriteHeader writes the column names, once; Write calls it if it was not called.
func (t *Table) WriteHeader() error {
	if t.header {
		return nil
	}
	t.header = true
	return t.line("SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL", "ID")
}

// Write prints one record.
func (t *Table) Write(r Record) error {
	if err := t.WriteHeader(); err != nil {
		return err
	}
	detail := r.Detail
	if r.ErrorCode != "" {
		detail = "[" + r.ErrorCode + "] " + detail
	}
	actor := r.Actor.Kind
	if r.Actor.Name != "" {
		actor += ":" + r.Actor.Name
	}
	return t.line(
		fmt.Sprint(r.Seq),
		r.Time.UTC().Format("2006-01-02T15:04:05Z"),
		actor,
		r.Action,
		targetValues(r.Target),
		string(r.Outcome),
		detail,
		r.ID,
	)
}

func (t *Table) line(seq, tm, actor, action, target, outcome, detail, id string) error {
	_, err := fmt.Fprintf(t.w, "%*s  %-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n",
		widthSeq, cell(seq, widthSeq),
		widthTime, cell(tm, widthTime),
		widthActor, cell(actor, widthActor),
		widthAction, cell(action, widthAction),
		widthTarget, cell(target, widthTarget),
		widthOutcome, cell(outcome, widthOutcome),
		widthDetail, cell(detail, widthDetail),
		cell(id, 0))
	if err != nil {
		return fmt.Errorf("audit: table: %w", err)
	}
	return nil
}

// WriteTable prints a header and records as a Table does.
func WriteTable(w io.Writer, records []Record) error {
	t := NewTable(w)
	if err := t.WriteHeader(); err != nil {
		return err
	}
	for _, r := range records {
		if err := t.Write(r); err != nil {
			return err
		}
	}
	return nil
}

// targetValues lists the target's values, the usual keys first, then the others
// by key.
func targetValues(target map[string]string) string {
	keys := make([]string, 0, len(target))
	for k := range target {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		switch k {
		case "user":
			return 0
		case "ip":
			return 1
		case "message_id":
			return 2
		}
		return 3
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	vals := make([]string, 0, len(keys))
	for _, k := range keys {
		if v := target[k]; v != "" {
			vals = append(vals, v)
		}
	}
	return strings.Join(vals, ",")
}

// cell makes s safe to print and cuts it to width characters (0: no limit); an
// empty value prints as "-".
func cell(s string, width int) string {
	s = printable(s)
	if s == "" {
		return "-"
	}
	if width > 0 && utf8.RuneCountInString(s) > width {
		runes := []rune(s)
		s = string(runes[:width-1]) + "…"
	}
	return s
}

// printable replaces what a terminal would interpret, or what would hide
// characters from the reader, by '?' (line breaks and tabs by a space).
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteByte('?')
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
