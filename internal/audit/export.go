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
func Export(ctx context.Context, js jetstream.JetStream, f Filter, format string, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var (
		each   func(storedMsg) error
		finish = func() error { return nil }
	)
	switch format {
	case FormatJSONL, "":
		all := f.IsZero()
		each = func(m storedMsg) error {
			if !all {
				var r Record
				if json.Unmarshal(m.data, &r) != nil || !f.Match(r) {
					return nil
				}
			}
			if _, err := bw.Write(m.data); err != nil {
				return err
			}
			return bw.WriteByte('\n')
		}
	case FormatCSV:
		cw := csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		each = func(m storedMsg) error {
			var r Record
			if json.Unmarshal(m.data, &r) != nil || !f.Match(r) {
				return nil
			}
			return cw.Write(csvRow(r))
		}
		finish = func() error {
			cw.Flush()
			return cw.Error()
		}
	default:
		return fmt.Errorf("%w %q (want %s or %s)", ErrFormat, format, FormatJSONL, FormatCSV)
	}
	if err := scan(ctx, js, bus.StreamAudit, f.subject(), each); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := finish(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
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
