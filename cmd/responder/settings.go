package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/m365"
)

// tenantFlags are the tenant credentials and endpoints.
type tenantFlags struct {
	TenantID     string `help:"Entra tenant id (GUID)." env:"RESPONDER_TENANT_ID"`
	ClientID     string `help:"Application (client) id." env:"RESPONDER_CLIENT_ID"`
	ClientSecret string `help:"Client secret (prefer a certificate)." env:"RESPONDER_CLIENT_SECRET"`
	ClientCert   string `help:"PEM file with the private key followed by the certificate." env:"RESPONDER_CLIENT_CERT" type:"path"`
	LoginURL     string `help:"Authority host (sovereign clouds, emulator)." env:"RESPONDER_LOGIN_URL"`
	GraphURL     string `help:"Graph base URL, ending in /v1.0." env:"RESPONDER_GRAPH_URL"`
	ManageURL    string `help:"Management Activity API base URL, ending in /api/v1.0." env:"RESPONDER_MANAGE_URL"`
	ExchangeURL  string `help:"Exchange Online admin API base URL, ending in /adminapi/beta (mailbox forwarding)." env:"RESPONDER_EXCHANGE_URL"`
	DefenderURL  string `help:"Defender for Endpoint API origin (default https://api.securitycenter.microsoft.com; regional hosts such as https://eu.api.security.microsoft.com)." env:"RESPONDER_DEFENDER_URL"`
}

// credentials validates the flags and reads the certificate. Extra CAs come from
// SSL_CERT_FILE, which Go's TLS stack reads by itself.
func (f tenantFlags) credentials() (m365.Credentials, error) {
	c := m365.Credentials{
		TenantID: f.TenantID, ClientID: f.ClientID, ClientSecret: f.ClientSecret,
		LoginURL: f.LoginURL, GraphURL: f.GraphURL, ManageURL: f.ManageURL, ExchangeURL: f.ExchangeURL,
		DefenderURL: f.DefenderURL,
	}
	if f.ClientCert != "" {
		// Refused when others can read it, as key files are (every command
		// that builds credentials, not only serve).
		b, err := m365.ReadCertPEM(f.ClientCert)
		if err != nil {
			return c, fmt.Errorf("client certificate (RESPONDER_CLIENT_CERT): %w", err)
		}
		c.CertPEM = b
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// busFlags say where NATS is.
type busFlags struct {
	natsAuthFlags
	NatsURL string `help:"External NATS URL; empty runs an embedded server." env:"RESPONDER_NATS_URL"`
	DataDir string `help:"Data directory (embedded NATS store, local context)." env:"RESPONDER_DATA_DIR" default:"${default_data_dir}"`
}

func defaultDataDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".responder")
	}
	return ".responder"
}

// localContext is written by serve into its data directory so that act and audit
// on the same machine find the engine with no flags (like a kubeconfig).
type localContext struct {
	NatsURL  string    `json:"nats_url"`
	TenantID string    `json:"tenant_id"`
	Started  time.Time `json:"started"`
}

func contextPath(dataDir string) string { return filepath.Join(dataDir, "context.json") }

func writeContext(dataDir string, lc localContext) error {
	b, _ := json.MarshalIndent(lc, "", "  ")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(contextPath(dataDir), b, 0o600)
}

func readContext(dataDir string) (localContext, error) {
	var lc localContext
	b, err := os.ReadFile(contextPath(dataDir))
	if err != nil {
		return lc, err
	}
	return lc, json.Unmarshal(b, &lc)
}

// clientFlags are for commands that talk to a running engine.
type clientFlags struct {
	natsAuthFlags
	NatsURL  string `help:"NATS URL of the engine (default: from the local context, else nats://127.0.0.1:4222)." env:"RESPONDER_NATS_URL"`
	DataDir  string `help:"Data directory holding the local context." env:"RESPONDER_DATA_DIR" default:"${default_data_dir}"`
	TenantID string `help:"Tenant id (default: from the local context)." env:"RESPONDER_TENANT_ID"`
}

func (f clientFlags) resolve() (url, tenant string, err error) {
	url, tenant = f.NatsURL, f.TenantID
	if url == "" || tenant == "" {
		if lc, err := readContext(f.DataDir); err == nil {
			if url == "" {
				url = lc.NatsURL
			}
			if tenant == "" {
				tenant = lc.TenantID
			}
		}
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	if tenant == "" {
		return "", "", errors.New("missing tenant id (--tenant-id or RESPONDER_TENANT_ID; or run on the machine of a `responder serve` that wrote " + contextPath(f.DataDir) + ")")
	}
	return url, tenant, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
