package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// ErrFormat is returned by Export for a format it does not know.
var ErrFormat = errors.New("audit: unknown export format")

// csvHeader is the header row of a CSV export.
var csvHeader = []string{
	"seq", "time", "tenant_id", "request_id", "action", "target", "actor_kind", "actor_name",
	"outcome", "detail", "error_code", "reason", "ticket", "playbook", "event_id", "dry_run",
	"attempts", "graph_request_ids", "id", "hash",
}

// Export writes the records f matches, in stream order, up to the last one stored
// when Export began.
//
// FormatJSONL ("jsonl", also the default for "") writes each record on its own
// line exactly as stored, so an unfiltered export verifies with VerifyReader and
// a filtered one with VerifyPartial. An unfiltered export also carries the
// messages of the stream that are not records, so that verifying it offline
// finds them.
//
// FormatCSV ("csv") writes a header and the main columns, for people and
// spreadsheets: it cannot be verified. Targets are written as key=value pairs
// separated by ';', graph request ids separated by spaces. A cell that a
// spreadsheet would run as a formula (starting with = + - @, tab or CR) is
// prefixed with a single quote.
//
// Export writes no head: ExportSigned is the export that VerifyExport accepts.
func Export(ctx context.Context, js jetstream.JetStream, f Filter, format string, w io.Writer) error {
	return export(ctx, js, f, format, nil, w)
}

// ExportSigned is Export up to and including the record that head names (a
// head signed by an engine: the kept head, ReadHeadKV), followed in JSONL by the
// head itself as the last line. Records stored after the head are left to the
// next export. VerifyExport then fails an export whose head line is missing or
// that lost records before it.
func ExportSigned(ctx context.Context, js jetstream.JetStream, f Filter, format string, head Head, w io.Writer) error {
	if head.Type != HeadType || head.Seq == 0 || head.Sig == "" {
		return errors.New("audit: export: no signed head to end the export with")
	}
	return export(ctx, js, f, format, &head, w)
}

func export(ctx context.Context, js jetstream.JetStream, f Filter, format string, head *Head, w io.Writer) error {
	x, err := NewExporter(w, f, format, head)
	if err != nil {
		return err
	}
	err = scan(ctx, js, bus.StreamAudit, f.subject(), func(m storedMsg) error {
		return x.Add(Stored{Seq: m.seq, Subject: m.subject, Data: m.data})
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("audit: export: %w", err)
	}
	return x.Close()
}

// Exporter writes an export from messages fed to it in stream order, from any
// transport (the stream, or the engine's query service): Add each, then Close.
type Exporter struct {
	bw     *bufio.Writer
	f      Filter
	all    bool
	head   *Head
	cw     *csv.Writer // FormatCSV
	left   int         // messages stored after the head, left to the next export
	closed bool
}

// NewExporter starts an export to w of the messages f matches in format. With a
// head, messages after the record the head names are left out and, in JSONL,
// the head is written last.
func NewExporter(w io.Writer, f Filter, format string, head *Head) (*Exporter, error) {
	x := &Exporter{bw: bufio.NewWriterSize(w, 64<<10), f: f, all: f.IsZero(), head: head}
	switch format {
	case FormatJSONL, "":
	case FormatCSV:
		x.cw = csv.NewWriter(x.bw)
		if err := x.cw.Write(csvHeader); err != nil {
			return nil, fmt.Errorf("audit: export: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w %q (want %s or %s)", ErrFormat, format, FormatJSONL, FormatCSV)
	}
	return x, nil
}

// Add writes m if the filter matches it; it fails only when writing fails.
func (x *Exporter) Add(m Stored) error {
	if x.head != nil && m.Seq > x.head.Seq {
		x.left++
		return nil
	}
	if x.cw != nil {
		var r Record
		if json.Unmarshal(m.Data, &r) != nil || !x.f.Match(r) {
			return nil
		}
		if err := x.cw.Write(csvRow(r)); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		return nil
	}
	if !x.all {
		var r Record
		if json.Unmarshal(m.Data, &r) != nil || !x.f.Match(r) {
			return nil
		}
	}
	if _, err := x.bw.Write(m.Data); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := x.bw.WriteByte('\n'); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

// Left is how many messages were stored after the head's record: they are left
// to the next export, whose head will cover them.
func (x *Exporter) Left() int { return x.left }

// Close writes the head line (JSONL with a head) and flushes.
func (x *Exporter) Close() error {
	if x.closed {
		return nil
	}
	x.closed = true
	if x.cw != nil {
		x.cw.Flush()
		if err := x.cw.Error(); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	} else if x.head != nil {
		if _, err := x.bw.Write(append(x.head.Marshal(), '\n')); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	if err := x.bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

func csvRow(r Record) []string {
	row := []string{
		strconv.FormatUint(r.Seq, 10),
		r.Time.UTC().Format(time.RFC3339Nano),
		r.TenantID,
		r.RequestID,
		r.Action,
		joinTarget(r.Target, "=", ";"),
		r.Actor.Kind,
		r.Actor.Name,
		string(r.Outcome),
		r.Detail,
		r.ErrorCode,
		r.Reason,
		r.Ticket,
		r.Playbook,
		r.EventID,
		strconv.FormatBool(r.DryRun),
		strconv.Itoa(r.Attempts),
		strings.Join(r.GraphRequestIDs, " "),
		r.ID,
		r.Hash,
	}
	for i, v := range row {
		row[i] = defuseCell(v)
	}
	return row
}

// defuseCell keeps a spreadsheet from running a cell as a formula (CSV injection:
// details and targets come from the tenant, which an attacker may control).
func defuseCell(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + v
	}
	return v
}

// joinTarget writes target as sorted key<kv>value pairs joined by sep.
func joinTarget(target map[string]string, kv, sep string) string {
	keys := make([]string, 0, len(target))
	for k := range target {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(k)
		b.WriteString(kv)
		b.WriteString(target[k])
	}
	return b.String()
}
