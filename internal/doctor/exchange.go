package doctor

import (
	"context"
	"fmt"
	"io"
)

// The Exchange admin API actions reach Exchange through InvokeCommand, an
// endpoint Microsoft does not document and may retire. A token with
// Exchange.ManageAsApp says nothing about whether the endpoint still answers
// (or whether the service principal holds an Exchange role), so doctor runs a
// harmless read through the same adapter the actions use
// (graphexec.InvokeCommandProbe: Get-Mailbox -ResultSize 1) and fails every
// Exchange action when it does not work, saying why: a retired endpoint is
// named as such, with the documented v2.0 admin API as the fallback to watch.

// exchangeProbeCmd is what the probe runs, for the report.
const exchangeProbeCmd = "InvokeCommand Get-Mailbox -ResultSize 1"

// probeExchange runs cfg.ExchangeProbe when an Exchange action is checked and
// its token was had, and marks the Exchange rows when the probe fails.
func (rep *Report) probeExchange(ctx context.Context, cfg Config) {
	if cfg.ExchangeProbe == nil {
		return
	}
	if _, ok := rep.Roles[Exchange]; !ok {
		return
	}
	var rows []int
	for i, row := range rep.Rows {
		if row.Audience == Exchange && row.Kind == KindAction {
			rows = append(rows, i)
		}
	}
	if len(rows) == 0 {
		return
	}
	if err := cfg.ExchangeProbe(ctx); err != nil {
		rep.ExchangeAPIError = err.Error()
		for _, i := range rows {
			row := &rep.Rows[i]
			if len(row.Missing) > 0 || row.Problem != "" {
				continue // the missing permission already explains it
			}
			row.OK = false
			row.Problem = fmt.Sprintf("the Exchange admin API probe (%s) failed: %s", exchangeProbeCmd, rep.ExchangeAPIError)
		}
		return
	}
	rep.ExchangeAPI = exchangeProbeCmd + " answered"
}

// printExchange writes the probe's verdict under the table.
func (rep Report) printExchange(w io.Writer) {
	switch {
	case rep.ExchangeAPIError != "":
		fmt.Fprintf(w, "\nexchange admin API:\tFAILED: %s\n", rep.ExchangeAPIError)
	case rep.ExchangeAPI != "":
		fmt.Fprintf(w, "\nexchange admin API:\t%s\n", rep.ExchangeAPI)
	}
}
