package engine

import (
	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/actions/defenderexec"
	"github.com/responder-sec/responder/internal/m365"
)

// DefenderSettings are the Defender for Endpoint actions' safety settings.
type DefenderSettings struct {
	// ProtectedDevices are machine ids, Entra device ids or computer names
	// playbooks never isolate (besides the responder-protected machine tag).
	ProtectedDevices []string
	// ServerTags mark servers and domain controllers besides osPlatform
	// (nil: server, domain-controller, dc); a playbook's isolation of one
	// waits for approval.
	ServerTags []string
	// AllowedHashes are file hashes never blocked.
	AllowedHashes []string
	// Budgets paces the Defender API calls (nil: Microsoft's limits).
	Budgets *defenderexec.Budgets
}

// defender builds the Defender for Endpoint executor: plain HTTP with a token
// for the Defender API's own audience from the engine's credential; the
// verified domains come from the Graph executor.
func (e *Engine) defender(domains actions.VerifiedDomainSource) *defenderexec.Executor {
	creds := e.cfg.Credentials
	creds.HTTPClient = e.httpClient
	d := e.cfg.Defender
	return defenderexec.New(defenderexec.Config{
		HTTP: m365.BearerClient(creds, e.cred, m365.DefenderScope), BaseURL: creds.DefenderAPIURL(),
		Budgets: d.Budgets, Logger: e.log, ClientID: creds.ClientID, Domains: domains,
		ProtectedDevices: d.ProtectedDevices, ServerTags: d.ServerTags, AllowedHashes: d.AllowedHashes,
		Settings: e.cfg.ActionSettings,
	})
}
