package event_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/responder-sec/responder/internal/event"
)

func readAlert(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "alerts_v2", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNormalizeAlertPublic runs the normaliser on public alerts_v2 records
// (testdata/alerts_v2/SOURCES.md says where each came from).
func TestNormalizeAlertPublic(t *testing.T) {
	// Microsoft Graph docs, "List alerts_v2" response example: a Defender for
	// Endpoint antivirus alert on one device, with the file's hashes in a
	// fileEvidence and again in the processEvidence's image file.
	raw := readAlert(t, "ms-graph-docs-list-alerts_v2.json")
	if src, err := event.DetectSource(raw); err != nil || src != event.SourceAlert {
		t.Fatalf("DetectSource: %q %v", src, err)
	}
	env, err := event.Normalize("fallback-tenant", raw)
	if err != nil {
		t.Fatal(err)
	}
	a := env.Alert
	if env.Source != event.SourceAlert || env.Kind != "DefenseEvasion" || env.TenantID != "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c" ||
		!env.Time.Equal(time.Date(2021, 5, 2, 14, 19, 1, 326666700, time.UTC)) || env.ID != "da637551227677560813_-961444813:2021-05-02T14:19:01.3266667Z" {
		t.Errorf("envelope: %+v", env)
	}
	if a == nil || a.Severity != "low" || a.Category != "DefenseEvasion" || a.ServiceSource != "microsoftDefenderForEndpoint" || a.DetectionSource != "antivirus" ||
		a.IncidentID != "28282" || a.Title != "Suspicious execution of hidden file" {
		t.Fatalf("alert: %+v", a)
	}
	if !slices.Equal(a.Devices, []string{"73e7e2de709dff64ef64b1d0c30e67fab63279db"}) || !slices.Equal(a.DeviceNames, []string{"tempdns"}) ||
		!slices.Equal(a.SHA256, []string{"8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec"}) ||
		!slices.Equal(a.SHA1, []string{"5f1e8acedc065031aad553b710838eb366cfee9a"}) || !slices.Equal(a.MitreTechniques, []string{"T1564.001"}) {
		t.Errorf("evidence: %+v", a)
	}
	// NT AUTHORITY\SYSTEM has no UPN: no user; the device's interface address
	// is not an ipEvidence: no IP.
	if env.User != "" || env.UserID != "" || env.IP != "" || len(a.URLs) != 0 || len(a.Senders) != 0 {
		t.Errorf("identity: user %q id %q ip %q urls %v", env.User, env.UserID, env.IP, a.URLs)
	}
	if env.AlertField("device") != a.Devices[0] || env.AlertField("sha256") != a.SHA256[0] || env.AlertField("severity") != "low" || env.AlertField("url") != "" {
		t.Errorf("AlertField")
	}

	// demisto/content test data: a customTi alert on a CentOS device whose
	// ids are anonymised ("pid", "mdid", "tenantId"): no GUID tenant (the
	// argument is kept), no device id of Defender's form, ipEvidence 0.0.0.0
	// (unspecified: no IP), category "None".
	env, err = event.NormalizeAs(event.SourceAlert, "fallback-tenant", readAlert(t, "demisto-alerts_v2-linux.json"))
	if err != nil {
		t.Fatal(err)
	}
	if env.TenantID != "fallback-tenant" || env.Kind != "None" || env.IP != "" || len(env.Alert.Devices) != 0 || env.ID != "pid:2022-10-26T03:46:39.59Z" ||
		!slices.Equal(env.Alert.SHA256, []string{"7caea94896efb829044127483469607c6a36bdcdfab162f57b4ed650b9e3449e"}) ||
		!slices.Equal(env.Alert.DeviceNames, []string{"msde-agent-host-centos7.c.dmst-integrations.internal"}) || env.Alert.DetectionSource != "customTi" {
		t.Errorf("linux alert: %+v %+v", env, env.Alert)
	}
	// The same alert id, updated later, is a new event; the resolved
	// investigation alert keeps its status.
	env2, err := event.Normalize("t", readAlert(t, "demisto-alerts_v2-investigation.json"))
	if err != nil {
		t.Fatal(err)
	}
	if env2.ID == env.ID || env2.Alert.Status != "resolved" || env2.Alert.Severity != "informational" || env2.Kind != "SuspiciousActivity" {
		t.Errorf("investigation alert: %+v %+v", env2, env2.Alert)
	}
}

// TestNormalizeAlertMail: mail and identity evidence (the shapes of
// https://learn.microsoft.com/graph/api/resources/security-analyzedmessageevidence
// and …/security-mailboxevidence, with the quirks of real captures: an
// internetMessageId without brackets, an empty p1Sender, senderIp
// 255.255.255.255), and hostile values that must not reach a playbook.
func TestNormalizeAlertMail(t *testing.T) {
	raw := []byte(`{"@odata.type":"#microsoft.graph.security.alert","id":"fa1111","tenantId":"4F1B6F1E-0000-4000-8000-000000000001",
	"severity":"high","category":"InitialAccess","serviceSource":"microsoftDefenderForOffice365","detectionSource":"microsoftDefenderForOffice365",
	"title":"Email messages containing malicious URL removed after delivery","lastUpdateDateTime":"2026-11-20T08:21:40Z",
	"evidence":[
	 {"@odata.type":"#microsoft.graph.security.mailboxEvidence","primaryAddress":"megan@contoso.com","userAccount":{"azureAdUserId":"5F3C2A1B-9D8E-4C7B-A6F5-0E1D2C3B4A59","userPrincipalName":"megan@contoso.com"}},
	 {"@odata.type":"#microsoft.graph.security.analyzedMessageEvidence","networkMessageId":"42220A17-4FAE-42B7-E485-08DD51827298",
	  "internetMessageId":"abc.123@mail.evil.example","senderIp":"255.255.255.255","recipientEmailAddress":"megan@contoso.com",
	  "p1Sender":{"emailAddress":"","domainName":""},"p2Sender":{"emailAddress":"Billing@Evil.Example"},"urls":["https://login.evil.example/x?y=1","javascript alert(1)"]},
	 {"@odata.type":"#microsoft.graph.security.urlEvidence","url":"https://login.evil.example/x?y=1"},
	 {"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"198.51.100.23"},
	 {"@odata.type":"#microsoft.graph.security.deviceEvidence","mdeDeviceId":"not-a-device; rm -rf"}
	]}`)
	env, err := event.Normalize("", raw)
	if err != nil {
		t.Fatal(err)
	}
	a := env.Alert
	if env.User != "megan@contoso.com" || env.UserID != "5f3c2a1b-9d8e-4c7b-a6f5-0e1d2c3b4a59" || env.Mailbox != "megan@contoso.com" || env.IP != "198.51.100.23" ||
		env.TenantID != "4f1b6f1e-0000-4000-8000-000000000001" || env.Kind != "InitialAccess" {
		t.Errorf("envelope: %+v", env)
	}
	if !slices.Equal(a.Senders, []string{"billing@evil.example"}) || !slices.Equal(a.MessageIDs, []string{"<abc.123@mail.evil.example>"}) ||
		!slices.Equal(a.NetworkMessageIDs, []string{"42220a17-4fae-42b7-e485-08dd51827298"}) ||
		!slices.Equal(a.URLs, []string{"https://login.evil.example/x?y=1"}) || !slices.Equal(a.Domains, []string{"login.evil.example"}) || len(a.Devices) != 0 {
		t.Errorf("mail evidence: %+v", a)
	}
	for f, want := range map[string]string{"sender": "billing@evil.example", "message_id": "<abc.123@mail.evil.example>", "domain": "login.evil.example", "service_source": "microsoftDefenderForOffice365"} {
		if got := env.AlertField(f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}

	for name, bad := range map[string]string{
		"no id":       `{"serviceSource":"x","lastUpdateDateTime":"2026-11-20T08:21:40Z"}`,
		"no time":     `{"id":"a","serviceSource":"x","lastUpdateDateTime":null}`,
		"bad time":    `{"id":"a","serviceSource":"x","lastUpdateDateTime":"yesterday"}`,
		"id injected": `{"id":"a.b>c d","serviceSource":"x","lastUpdateDateTime":"2026-11-20T08:21:40Z"}`,
	} {
		_, err := event.NormalizeAs(event.SourceAlert, "t", json.RawMessage(bad))
		if !errors.Is(err, event.ErrMissingField) && !errors.Is(err, event.ErrBadField) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
