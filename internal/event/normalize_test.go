package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const argTenant = "arg-tenant"

// Small hand-written records, one per rule; the shapes follow the public fixtures but
// every value is invented.
const (
	auditInboxRule = `{"CreationTime":"2024-03-01T10:20:30","Id":"0b8f7c2e-1111-4a4a-9b9b-000000000001",
		"Operation":"New-InboxRule","OrganizationId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","RecordType":1,
		"ResultStatus":"True","UserKey":"10032000ABCDEF12","UserType":2,"Workload":"Exchange",
		"ClientIP":"203.0.113.9:51515","UserId":"Alice@Contoso.com",
		"Parameters":[{"Name":"ForwardTo","Value":"x@evil.example"}]}`
	auditMailbox = `{"CreationTime":"2024-03-01T10:20:30.1234567Z","Id":"mbx-1","Operation":"MailItemsAccessed",
		"RecordType":50,"Workload":"Exchange","UserId":"S-1-5-21-1","UserKey":"4f1c2a3b-0000-4000-8000-00000000000a",
		"MailboxOwnerUPN":"bob@contoso.com","ClientIPAddress":"[2001:db8::7]:443"}`
	auditSystem = `{"CreationTime":"2024-03-01T10:20:30","Id":"sys-1","Operation":"Set-Mailbox","RecordType":1,
		"Workload":"Exchange","UserId":"NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)",
		"Parameters":"-Identity \"x\" -ForwardingSmtpAddress \"smtp:y@z.example\"","ClientIP":null}`
	auditAAD = `{"CreationTime":"2024-03-01T10:20:30","Id":"aad-1","Operation":"UserLoggedIn","RecordType":15,
		"Workload":"AzureActiveDirectory","OrganizationId":"ANONYMIZED","UserId":"carol@contoso.com",
		"UserKey":"11111111-2222-3333-4444-555555555555","ClientIP":"<null>","ActorIpAddress":"198.51.100.4",
		"ExtendedProperties":"-Name \"foo\""}`
	auditQueryRecord = `{"id":"q-1","createdDateTime":"2024-03-01T10:20:30Z","operation":"UserLoggedIn",
		"organizationId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","userId":"11111111-2222-3333-4444-555555555555",
		"userPrincipalName":"dave@contoso.com","clientIp":null,
		"auditData":{"CreationTime":"2024-03-01T10:20:30Z","Id":"q-1","Operation":"UserLoggedIn","RecordType":15,
		"Workload":"AzureActiveDirectory","UserId":"dave@contoso.com","ClientIP":"2001:DB8::1"}}`
	signInOK = `{"id":"si-1","createdDateTime":"2024-03-01T10:20:30.1234567Z","userPrincipalName":"erin@contoso.com",
		"userId":"22222222-3333-4444-5555-666666666666","appDisplayName":"Office 365 Exchange Online",
		"ipAddress":"::ffff:192.0.2.33","status":{"errorCode":0,"failureReason":"Other."}}`
	signInFail = `{"id":"si-2","createdDateTime":"2024-03-01T10:20:30Z","userPrincipalName":"mallory",
		"userId":"not-a-guid","ipAddress":"192.0.2.34","status":{"errorCode":"50126"}}`
	signInNoStatus = `{"id":"si-3","createdDateTime":"2024-03-01T10:20:30Z","appId":"x","status":null}`
	riskDet        = `{"id":"rd-1","riskEventType":"anonymizedIPAddress","riskLevel":"high","riskState":"atRisk",
		"ipAddress":"185.220.101.1","activityDateTime":"2024-03-01T10:00:00Z","detectedDateTime":"2024-03-01T10:05:00Z",
		"lastUpdatedDateTime":"2024-03-01T10:20:30.1234567Z","userId":"33333333-4444-5555-6666-777777777777",
		"userPrincipalName":"frank@contoso.com","additionalInfo":"[{\"Key\":\"userAgent\",\"Value\":\"x\"}]"}`
	riskDetNoLast = `{"id":"rd-2","riskEventType":"passwordSpray","detectedDateTime":"2024-03-01T9:05:00.5Z",
		"lastUpdatedDateTime":null}`
	riskyUser = `{"id":"44444444-5555-6666-7777-888888888888","userPrincipalName":"grace@contoso.com",
		"riskLevel":"medium","riskState":"atRisk","riskLastUpdatedDateTime":"2024-03-01T10:20:30Z"}`
	diagSignIn = `{"time":"2024-03-01T10:20:31.0000000Z","category":"NonInteractiveUserSignInLogs",
		"tenantId":"99999999-8888-7777-6666-555555555555","callerIpAddress":"192.0.2.50",
		"properties":{"id":"ds-1","createdDateTime":"2024-03-01T10:20:30+00:00","userPrincipalName":"heidi@contoso.com",
		"ipAddress":"192.0.2.50","tenantId":"user1","status":{"errorCode":500121}}}`
	diagRiskyUser = `{"time":"8/22/2022 6:11:52 PM","category":"RiskyUsers","tenantId":"99999999-8888-7777-6666-555555555555",
		"properties":{"id":"55555555-6666-7777-8888-999999999999","userPrincipalName":"ivan@contoso.com",
		"riskLevel":"high","riskLastUpdatedDateTime":"2022-08-22T18:11:52.702Z"}}`
	diagRiskNoTime = `{"time":"12/13/2024 4:34:03 PM","category":"UserRiskEvents","properties":{"id":"rd-3","riskEventType":"unfamiliarFeatures"}}`
	diagAuditLogs  = `{"time":"2024-03-01T10:20:30Z","category":"AuditLogs","properties":{"id":"Directory_x","activityDateTime":"2024-03-01T10:20:30Z"}}`
	directoryAudit = `{"id":"Directory_1","category":"UserManagement","activityDisplayName":"Update user","activityDateTime":"2024-03-01T10:20:30Z","loggedByService":"Core Directory"}`
	caPolicy       = `{"id":"p1","displayName":"Block","createdDateTime":"2024-03-01T10:20:30Z","state":"enabled","conditions":{}}`
)

func TestDetectSource(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      Source
		wantErr   error
	}{
		{"exchange admin", auditInboxRule, SourceAudit, nil},
		{"exchange mailbox", auditMailbox, SourceAudit, nil},
		{"audit without Operation", `{"CreationTime":"2020-02-17T17:12:03","RecordType":-1,"Id":"x"}`, SourceAudit, nil},
		{"graph audit query record", auditQueryRecord, SourceAudit, nil},
		{"signIn", signInOK, SourceSignIn, nil},
		{"signIn with only appId", signInNoStatus, SourceSignIn, nil},
		{"riskDetection", riskDet, SourceRiskDetection, nil},
		{"riskDetection detected only", riskDetNoLast, SourceRiskDetection, nil},
		{"riskyUser", riskyUser, SourceRiskyUser, nil},
		{"riskyUser without timestamp", `{"id":"u","riskLevel":"low","userPrincipalName":"a@b.co"}`, SourceRiskyUser, nil},
		{"diagnostic sign-in", diagSignIn, SourceSignIn, nil},
		{"diagnostic risky user", diagRiskyUser, SourceRiskyUser, nil},
		{"diagnostic risk event", diagRiskNoTime, SourceRiskDetection, nil},
		{"diagnostic service principal", `{"category":"ServicePrincipalSignInLogs","properties":{}}`, SourceSignIn, nil},
		{"diagnostic AuditLogs", diagAuditLogs, "", ErrUnknownSource},
		{"directoryAudit", directoryAudit, "", ErrUnknownSource},
		{"CA policy", caPolicy, "", ErrUnknownSource},
		{"collection", `{"value":[` + signInOK + `]}`, "", ErrUnknownSource},
		{"empty object", `{}`, "", ErrUnknownSource},
		{"odata error", `{"error":{"code":"x","message":"y"}}`, "", ErrUnknownSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectSource(json.RawMessage(tc.raw))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DetectSource = %q, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectSource = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, tc := range []struct {
		name, raw string
		want      Envelope // Raw is checked separately
	}{
		{"exchange admin: port stripped, zone-less time is UTC, OrganizationId is the tenant", auditInboxRule, Envelope{
			ID: "0b8f7c2e-1111-4a4a-9b9b-000000000001", Source: SourceAudit, Kind: "New-InboxRule",
			Time: ts("2024-03-01T10:20:30Z"), TenantID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
			User: "Alice@Contoso.com", IP: "203.0.113.9"}},
		{"mailbox audit: MailboxOwnerUPN, ClientIPAddress, GUID UserKey, 7-digit fraction", auditMailbox, Envelope{
			ID: "mbx-1", Source: SourceAudit, Kind: "MailItemsAccessed", Time: ts("2024-03-01T10:20:30.1234567Z"),
			TenantID: argTenant, User: "bob@contoso.com", UserID: "4f1c2a3b-0000-4000-8000-00000000000a", IP: "2001:db8::7"}},
		{"system account: no user, string Parameters, null ClientIP", auditSystem, Envelope{
			ID: "sys-1", Source: SourceAudit, Kind: "Set-Mailbox", Time: ts("2024-03-01T10:20:30Z"), TenantID: argTenant}},
		{"AAD: anonymised org id ignored, <null> ClientIP falls back to ActorIpAddress", auditAAD, Envelope{
			ID: "aad-1", Source: SourceAudit, Kind: "UserLoggedIn", Time: ts("2024-03-01T10:20:30Z"), TenantID: argTenant,
			User: "carol@contoso.com", UserID: "11111111-2222-3333-4444-555555555555", IP: "198.51.100.4"}},
		{"audit without Operation", `{"CreationTime":"2020-02-17T17:12:03","RecordType":-1,"Id":"x","ClientIP":"[::ffff:10.11.12.13]:12345"}`, Envelope{
			ID: "x", Source: SourceAudit, Kind: KindUnknown, Time: ts("2020-02-17T17:12:03Z"), TenantID: argTenant, IP: "10.11.12.13"}},
		{"audit with numbers as strings and a numeric Id", `{"CreationTime":"2020-02-17T17:12:03","RecordType":"15","Id":42,"Operation":"X"}`, Envelope{
			ID: "42", Source: SourceAudit, Kind: "X", Time: ts("2020-02-17T17:12:03Z"), TenantID: argTenant}},
		{"graph audit query record unwraps auditData", auditQueryRecord, Envelope{
			ID: "q-1", Source: SourceAudit, Kind: "UserLoggedIn", Time: ts("2024-03-01T10:20:30Z"),
			TenantID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", User: "dave@contoso.com",
			UserID: "11111111-2222-3333-4444-555555555555", IP: "2001:db8::1"}},
		{"signIn success, mapped v4 unmapped", signInOK, Envelope{
			ID: "si-1", Source: SourceSignIn, Kind: KindSignInSuccess, Time: ts("2024-03-01T10:20:30.1234567Z"),
			TenantID: argTenant, User: "erin@contoso.com", UserID: "22222222-3333-4444-5555-666666666666", IP: "192.0.2.33"}},
		{"signIn failure, string errorCode, non-UPN and non-GUID user", signInFail, Envelope{
			ID: "si-2", Source: SourceSignIn, Kind: KindSignInFailure, Time: ts("2024-03-01T10:20:30Z"),
			TenantID: argTenant, IP: "192.0.2.34"}},
		{"signIn without status", signInNoStatus, Envelope{
			ID: "si-3", Source: SourceSignIn, Kind: KindUnknown, Time: ts("2024-03-01T10:20:30Z"), TenantID: argTenant}},
		{"riskDetection: id + lastUpdatedDateTime", riskDet, Envelope{
			ID: "rd-1:2024-03-01T10:20:30.1234567Z", Source: SourceRiskDetection, Kind: "anonymizedIPAddress",
			Time: ts("2024-03-01T10:20:30.1234567Z"), TenantID: argTenant, User: "frank@contoso.com",
			UserID: "33333333-4444-5555-6666-777777777777", IP: "185.220.101.1"}},
		{"riskDetection: null lastUpdated falls back to detected (unpadded hour)", riskDetNoLast, Envelope{
			ID: "rd-2:2024-03-01T09:05:00.5Z", Source: SourceRiskDetection, Kind: "passwordSpray",
			Time: ts("2024-03-01T09:05:00.5Z"), TenantID: argTenant}},
		{"riskyUser: id + riskLastUpdatedDateTime, id is the object id", riskyUser, Envelope{
			ID: "44444444-5555-6666-7777-888888888888:2024-03-01T10:20:30Z", Source: SourceRiskyUser, Kind: "medium",
			Time: ts("2024-03-01T10:20:30Z"), TenantID: argTenant, User: "grace@contoso.com",
			UserID: "44444444-5555-6666-7777-888888888888"}},
		{"diagnostic sign-in: envelope tenant, properties record", diagSignIn, Envelope{
			ID: "ds-1", Source: SourceSignIn, Kind: KindSignInFailure, Time: ts("2024-03-01T10:20:30Z"),
			TenantID: "99999999-8888-7777-6666-555555555555", User: "heidi@contoso.com", IP: "192.0.2.50"}},
		{"diagnostic risky user", diagRiskyUser, Envelope{
			ID: "55555555-6666-7777-8888-999999999999:2022-08-22T18:11:52.702Z", Source: SourceRiskyUser, Kind: "high",
			Time: ts("2022-08-22T18:11:52.702Z"), TenantID: "99999999-8888-7777-6666-555555555555",
			User: "ivan@contoso.com", UserID: "55555555-6666-7777-8888-999999999999"}},
		{"diagnostic risk event without times uses the envelope's US-style time", diagRiskNoTime, Envelope{
			ID: "rd-3:2024-12-13T16:34:03Z", Source: SourceRiskDetection, Kind: "unfamiliarFeatures",
			Time: ts("2024-12-13T16:34:03Z"), TenantID: argTenant}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := json.RawMessage(tc.raw)
			got, err := Normalize(argTenant, raw)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if !bytes.Equal(got.Raw, raw) {
				t.Errorf("Raw changed:\n got %s\nwant %s", got.Raw, raw)
			}
			if got.Time.Location() != time.UTC {
				t.Errorf("Time %v is not in UTC", got.Time)
			}
			got.Raw = nil
			if !got.Time.Equal(tc.want.Time) {
				t.Errorf("Time = %v, want %v", got.Time, tc.want.Time)
			}
			got.Time = tc.want.Time
			if fieldsOf(got) != fieldsOf(tc.want) {
				t.Errorf("Normalize =\n %+v\nwant\n %+v", got, tc.want)
			}
			// NormalizeAs with the detected source gives the same envelope.
			again, err := NormalizeAs(tc.want.Source, argTenant, raw)
			if err != nil || again.ID != tc.want.ID {
				t.Errorf("NormalizeAs = %q, %v; want id %q", again.ID, err, tc.want.ID)
			}
		})
	}
}

// fieldsOf lets the table compare whole envelopes (Envelope holds a slice, so it
// is not comparable); Raw is checked separately.
func fieldsOf(e Envelope) comparableEnvelope {
	return comparableEnvelope{e.ID, e.Source, e.Kind, e.Time, e.TenantID, e.User, e.UserID, e.IP}
}

type comparableEnvelope struct {
	ID       string
	Source   Source
	Kind     string
	Time     time.Time
	TenantID string
	User     string
	UserID   string
	IP       string
}

func TestNormalizeRawIsACopy(t *testing.T) {
	buf := []byte(signInOK)
	env, err := Normalize(argTenant, buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X' // a caller reusing its read buffer must not corrupt the event
	if env.Raw[0] != '{' {
		t.Fatal("Raw aliases the caller's buffer")
	}
}

func TestNormalizeErrors(t *testing.T) {
	var syntax *json.SyntaxError
	for _, tc := range []struct {
		name, raw string
		src       Source // "" = Normalize
		is        error
		as        any
		mention   string
	}{
		{name: "invalid JSON (trailing comma)", raw: `{"id":"a",}`, as: &syntax, mention: "decode record"},
		{name: "empty input", raw: ``, mention: "decode record"},
		{name: "null", raw: `null`, mention: "not a JSON object"},
		{name: "array", raw: `[` + auditInboxRule + `]`, mention: "decode record"},
		{name: "string", raw: `"x"`, mention: "decode record"},
		{name: "trailing data", raw: signInOK + `{}`, mention: "decode record"},
		{name: "audit without Id", raw: `{"CreationTime":"2024-03-01T10:20:30","Operation":"X"}`, is: ErrMissingField, mention: "Id"},
		{name: "audit with null Id", raw: `{"CreationTime":"2024-03-01T10:20:30","Operation":"X","Id":null}`, is: ErrMissingField, mention: "Id"},
		{name: "audit with object Id", raw: `{"CreationTime":"2024-03-01T10:20:30","Operation":"X","Id":{}}`, is: ErrBadField, mention: "Id"},
		{name: "audit with bad time", raw: `{"CreationTime":"yesterday","Operation":"X","Id":"a"}`, is: ErrBadField, mention: "CreationTime"},
		{name: "audit with null time", raw: `{"CreationTime":null,"Operation":"X","Id":"a"}`, is: ErrMissingField, mention: "CreationTime"},
		{name: "audit with a time beyond year 9999 in UTC", raw: `{"CreationTime":"9999-12-31T23:59:59-01:00","Operation":"X","Id":"a"}`, is: ErrBadField, mention: "out of range"},
		{name: "audit with zero time", raw: `{"CreationTime":"0001-01-01T00:00:00","Operation":"X","Id":"a"}`, is: ErrMissingField, mention: "CreationTime"},
		{name: "signIn without id", raw: `{"createdDateTime":"2024-03-01T10:20:30Z","status":{"errorCode":0}}`, is: ErrMissingField, mention: "signin record: missing field id"},
		{name: "risk without any time", raw: `{"id":"a","riskEventType":"x","detectedDateTime":null}`, is: ErrMissingField, mention: "lastUpdatedDateTime/detectedDateTime/activityDateTime"},
		{name: "risky user without id", raw: `{"riskLastUpdatedDateTime":"2024-03-01T10:20:30Z","riskLevel":"low"}`, is: ErrMissingField, mention: "risky_user record: missing field id"},
		{name: "unknown shape", raw: directoryAudit, is: ErrUnknownSource},
		{name: "NormalizeAs with an invalid source", raw: signInOK, src: "bogus", is: ErrUnknownSource},
		{name: "NormalizeAs audit on a sign-in", raw: signInOK, src: SourceAudit, is: ErrMissingField, mention: "Id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.src == "" {
				_, err = Normalize(argTenant, json.RawMessage(tc.raw))
			} else {
				_, err = NormalizeAs(tc.src, argTenant, json.RawMessage(tc.raw))
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if tc.as != nil && !errors.As(err, tc.as) {
				t.Errorf("error %q does not wrap %T", err, tc.as)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestBareIP(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4":                                 "1.2.3.4",
		" 1.2.3.4 ":                               "1.2.3.4",
		"1.2.3.4:63070":                           "1.2.3.4",
		"[10.11.12.13]:12345":                     "10.11.12.13",
		"[10.11.12.13]":                           "10.11.12.13",
		"::ffff:10.11.12.13":                      "10.11.12.13",
		"[::ffff:10.11.12.13]:123":                "10.11.12.13",
		"[2001:db8::abcd]:12345":                  "2001:db8::abcd",
		"[2001:db8::abcd]":                        "2001:db8::abcd",
		"2001:DB8:0:0::ABCD":                      "2001:db8::abcd",
		"2001:0db8:85a3:0000:0000:8a2e:0370:7334": "2001:db8:85a3::8a2e:370:7334",
		"FE80::":                                  "fe80::",
		"fe80::1%eth0":                            "fe80::1",
		"0.0.0.0":                                 "",
		"::":                                      "",
		"":                                        "",
		"<null>":                                  "",
		"localhost":                               "",
		"localhost:12345":                         "",
		"[localhost]:12345":                       "",
		"cool.client.local:12345":                 "",
		"[cool.client.local]:12345":               "",
		"123.456.7.89":                            "",
		"77777777-7777-7777-7777-777777777777":    "",
		"1.2.3.4:":                                "",
		"1.2.3.4:port":                            "",
		"1.2.3.4:1234567":                         "",
		"[2001:db8::1":                            "",
		"[2001:db8::1]x":                          "",
		"1.2.3.4, 5.6.7.8":                        "",
		"2001:db8::1:65536":                       "",
		"[1.2.3.4]:80:80":                         "",
		"1.2.3.4/24":                              "",
		"::ffff:0.0.0.0":                          "",
		"[fe80::1%25eth0]:443":                    "fe80::1",
		"01.2.3.4":                                "",
		"1.2.3.4\x00":                             "",
		"2001:db8::1]":                            "",
		"[]:80":                                   "",
		":80":                                     "",
		"[::ffff:1.2.3.4]":                        "1.2.3.4",
		"2001:db8::ffff:1.2.3.4":                  "2001:db8::ffff:102:304",
		"64:ff9b::192.0.2.33":                     "64:ff9b::c000:221",
		"198.51.100.4:0":                          "198.51.100.4",
		"198.51.100.4:65535":                      "198.51.100.4",
		"198.51.100.4:99999":                      "198.51.100.4", // 5 digits: treated as a port, not validated further
		"[2001:db8::2]:99999":                     "2001:db8::2",
		"192.0.2.1 ":                              "192.0.2.1",
		"\t192.0.2.1\n":                           "192.0.2.1",
		"192.0.2.1:80 ":                           "192.0.2.1",
		"[192.0.2.1]:80 ":                         "192.0.2.1",
		"  [2001:db8::3]  ":                       "2001:db8::3",
		"[2001:db8::3]:80:80":                     "",
		"[[2001:db8::3]]":                         "",
		"[2001:db8::3]]":                          "",
		"::ffff:10.11.12.13:80":                   "",
		"10.11.12.13:80:80":                       "",
		"user@192.0.2.1":                          "",
		"http://192.0.2.1/":                       "",
		"192.0.2.1.":                              "",
		"-1.2.3.4":                                "",
		"1.2.3.4.5":                               "",
		"1.2.3":                                   "",
		"1.2.3.4:+80":                             "",
		"1.2.3.4:-80":                             "",
		"1.2.3.4: 80":                             "",
		"[1.2.3.4]: 80":                           "",
		"[1.2.3.4] :80":                           "",
		"[1.2.3.4]:":                              "",
		"[1.2.3.4]80":                             "",
		"[1.2.3.4":                                "",
		"1.2.3.4]":                                "",
		"[::1]":                                   "::1",
		"::1":                                     "::1",
		"127.0.0.1:8080":                          "127.0.0.1",
		"[::ffff:127.0.0.1]:8080":                 "127.0.0.1",
	} {
		if got := bareIP(in); got != want {
			t.Errorf("bareIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2015-06-29T20:03:19":               "2015-06-29T20:03:19Z",
		"2015-06-29T20:03:19Z":              "2015-06-29T20:03:19Z",
		"2015-06-29T20:03:19.1234567":       "2015-06-29T20:03:19.1234567Z",
		"2020-11-12T23:47:57.7831423Z":      "2020-11-12T23:47:57.7831423Z",
		"2022-03-30T14:52:21.7062186+00:00": "2022-03-30T14:52:21.7062186Z",
		"2022-03-30T16:52:21+02:00":         "2022-03-30T14:52:21Z",
		"2022-09-09T9:59:27.958Z":           "2022-09-09T09:59:27.958Z",
		"2022-09-09 09:59:27":               "2022-09-09T09:59:27Z",
		"2022-09-09 09:59:27Z":              "2022-09-09T09:59:27Z",
		"8/22/2022 6:11:52 PM":              "2022-08-22T18:11:52Z",
		"12/13/2024 4:34:03 AM":             "2024-12-13T04:34:03Z",
		"12/13/2024 16:34:03":               "2024-12-13T16:34:03Z",
		" 2015-06-29T20:03:19 ":             "2015-06-29T20:03:19Z",
	} {
		got, err := parseTime(in)
		if err != nil {
			t.Errorf("parseTime(%q): %v", in, err)
			continue
		}
		if got.Location() != time.UTC || got.Format(time.RFC3339Nano) != want {
			t.Errorf("parseTime(%q) = %v, want %s UTC", in, got, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2015-06-29", "2015-13-01T00:00:00Z", "1435608199", "29/06/2015 20:03:19",
		"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-06-01T00:00:00Z"} {
		if got, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

func TestIsUPNLike(t *testing.T) {
	for in, want := range map[string]bool{
		"alice@contoso.com":                             true,
		"DebraB@contoso.OnMicrosoft.com":                true,
		"o'brien@contoso.co.uk":                         true,
		"first.last+tag@sub-domain.contoso.com":         true,
		"bob_fabrikam.com#EXT#@contoso.onmicrosoft.com": true,
		"1153977025279851686@contoso.onmicrosoft.com":   true,
		"user1":                    false,
		"ANONYMIZED":               false,
		"SecurityComplianceAlerts": false,
		`NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)`: false,
		"urn:spo:guest#john.doe@example.com":                   false,
		"alice@contoso":                                        false,
		"@contoso.com":                                         false,
		"alice@":                                               false,
		"a@b@contoso.com":                                      false,
		"alice smith@contoso.com":                              false,
		"alice@contoso..com":                                   false,
		"alice@-contoso.com":                                   false,
		"alice@contoso.com.":                                   false,
		"alice@cont_oso.com":                                   false,
		"<alice@contoso.com>":                                  false,
		"":                                                     false,
	} {
		if got := isUPNLike(in); got != want {
			t.Errorf("isUPNLike(%q) = %v, want %v", in, got, want)
		}
	}
}

// publicFixtures is shared/fixtures/public of the workspace (see its SOURCES.md).
const publicFixtures = "../../../shared/fixtures/public"

// fixtureRule says what one fixture file holds.
type fixtureRule struct {
	match  string // substring of the file name
	format string // fmtJSON, fmtInvalid or fmtNotRecord
	want   Source // for fmtJSON
	reason string // for fmtNotRecord and fmtInvalid
}

const (
	fmtJSON      = "json"      // one record, a JSON array of records, or a Graph list response {"value":[…]}
	fmtInvalid   = "invalid"   // not valid JSON as published: Normalize must fail cleanly
	fmtNotRecord = "notrecord" // valid JSON that is not an event record of any Responder feed
)

// Files of the heterogeneous folders, classified by hand (from SOURCES.md and by
// reading them). A new file there fails the test until it is added here.
var fixtureRules = map[string][]fixtureRule{
	"o365-audit/ms-docs": {
		{match: "block15.audit-content-blob", format: fmtJSON, want: SourceAudit},
		{match: "block03.subscriptions-start", format: fmtNotRecord, reason: "Management API subscription response"},
		{match: "block09.subscriptions-list", format: fmtNotRecord, reason: "Management API subscription list"},
		{match: "block11.subscriptions-content", format: fmtNotRecord, reason: "Management API content listing (blob URIs)"},
		{match: "block13.webhook-notification", format: fmtNotRecord, reason: "Management API webhook notification (blob URIs)"},
		{match: "block17.subscriptions-notifications", format: fmtNotRecord, reason: "Management API notification listing"},
		{match: "block21.error", format: fmtNotRecord, reason: "Management API error body"},
	},
	"o365-audit/graph2otel": {
		{match: "liveUserLoggedInRecord", format: fmtJSON, want: SourceAudit},
	},
	"graph/graph2otel": {
		{match: "signins_test.go.liveInteractiveSignIn", format: fmtJSON, want: SourceSignIn},
		{match: "directoryaudits_test.go", format: fmtNotRecord, reason: "Graph directoryAudit (no Responder feed polls it; AAD audit arrives as Management API Audit.AzureActiveDirectory)"},
		{match: "conditionalaccess_test.go", format: fmtNotRecord, reason: "conditional access policy / named location configuration"},
	},
	"graph/ms-graph-docs": {
		{match: "beta_signin-list.md.response-1", format: fmtJSON, want: SourceSignIn},
		{match: "v1.0_signin-list.md.response-1", format: fmtInvalid, reason: "trailing comma as published"},
		{match: "response-riskDetection-remediated", format: fmtJSON, want: SourceRiskDetection},
		{match: "response-riskDetections-atRisk", format: fmtJSON, want: SourceRiskDetection},
		{match: "v1.0_riskdetection-get.md.response", format: fmtJSON, want: SourceRiskDetection},
		{match: "response-riskyUsers-dismissed", format: fmtJSON, want: SourceRiskyUser},
		{match: "request-riskyUsers-dismiss", format: fmtNotRecord, reason: "action request body"},
		{match: "ca-policy-block", format: fmtNotRecord, reason: "conditional access policy request/response"},
		{match: "conditionalaccesspolicy-get", format: fmtNotRecord, reason: "conditional access policy"},
		{match: "list-namedlocations", format: fmtNotRecord, reason: "named locations"},
		{match: "messagerules", format: fmtNotRecord, reason: "inbox rule (messageRule) resource"},
		{match: "message-get", format: fmtNotRecord, reason: "mail message resource"},
		{match: "user-revokesigninsessions", format: fmtNotRecord, reason: "action response"},
		{match: "concepts_errors", format: fmtNotRecord, reason: "Graph error body"},
	},
}

// diagnosticCategories is the test's own view of which Azure Monitor categories
// carry records of a Responder feed.
var diagnosticCategories = map[string]Source{
	"SignInLogs":                   SourceSignIn,
	"NonInteractiveUserSignInLogs": SourceSignIn,
	"ServicePrincipalSignInLogs":   SourceSignIn,
	"UserRiskEvents":               SourceRiskDetection,
	"RiskyUsers":                   SourceRiskyUser,
}

type folderTally struct {
	files, records, withUser, withIP int
	sources                          map[Source]int
	skipped                          map[string]int // reason → files or records
}

func TestNormalizeEveryPublicFixture(t *testing.T) {
	if _, err := os.Stat(publicFixtures); err != nil {
		t.Fatalf("public fixtures not found at %s (%v): this test needs the shared workspace beside the checkout", publicFixtures, err)
	}
	upnRE := regexp.MustCompile(`^[^\s@:\\/()<>\[\],;"]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$`)
	tallies := map[string]*folderTally{}
	tally := func(folder string) *folderTally {
		if tallies[folder] == nil {
			tallies[folder] = &folderTally{sources: map[Source]int{}, skipped: map[string]int{}}
		}
		return tallies[folder]
	}

	// check normalises one record expected to come from src and checks it against
	// the test's own reading of the record.
	check := func(ft *folderTally, where string, raw []byte, src Source) {
		t.Helper()
		ft.records++
		if got, err := DetectSource(raw); err != nil || got != src {
			t.Errorf("%s: DetectSource = %q, %v; want %q", where, got, err, src)
			return
		}
		env, err := Normalize("fixture-tenant", raw)
		if err != nil {
			t.Errorf("%s: Normalize: %v", where, err)
			return
		}
		ft.sources[env.Source]++
		if env.Source != src || env.ID == "" || env.Kind == "" || env.TenantID == "" {
			t.Errorf("%s: envelope lacks source/id/kind/tenant: %+v", where, fieldsOf(env))
		}
		if env.Time.IsZero() || env.Time.Location() != time.UTC {
			t.Errorf("%s: Time = %v, want non-zero UTC", where, env.Time)
		}
		if !bytes.Equal(env.Raw, raw) {
			t.Errorf("%s: Raw differs from the input", where)
		}
		rec, wrapper := unwrapForTest(t, raw)
		var userFields, ipFields []string
		if src == SourceAudit {
			userFields = []string{str(rec, "UserId"), str(rec, "MailboxOwnerUPN"), str(wrapper, "userPrincipalName")}
			ipFields = []string{str(rec, "ClientIP"), str(rec, "ClientIPAddress"), str(rec, "ActorIpAddress")}
		} else {
			userFields = []string{str(rec, "userPrincipalName")}
			ipFields = []string{str(rec, "ipAddress")}
		}
		wantUser := ""
		for _, u := range userFields {
			if upnRE.MatchString(u) {
				wantUser = u
				break
			}
		}
		if env.User != wantUser {
			t.Errorf("%s: User = %q, want %q (candidates %q)", where, env.User, wantUser, userFields)
		}
		var wantIP net.IP
		for _, v := range ipFields {
			if wantIP = oracleIP(v); wantIP != nil {
				break
			}
		}
		switch {
		case wantIP == nil && env.IP != "":
			t.Errorf("%s: IP = %q, want none (candidates %q)", where, env.IP, ipFields)
		case wantIP != nil && !wantIP.Equal(net.ParseIP(env.IP)):
			t.Errorf("%s: IP = %q, want %v (candidates %q)", where, env.IP, wantIP, ipFields)
		case env.IP != "" && (strings.ContainsAny(env.IP, "[]%") || strings.HasPrefix(env.IP, "::ffff:")):
			t.Errorf("%s: IP = %q is not a bare address", where, env.IP)
		}
		if env.User != "" {
			ft.withUser++
		}
		if env.IP != "" {
			ft.withIP++
		}
	}
	// notRecord checks that DetectSource refuses every object of a non-record file,
	// so that a feed handed one would dead-letter it instead of misfiling it.
	notRecord := func(ft *folderTally, where string, data []byte, reason string) {
		t.Helper()
		ft.skipped[reason]++
		for i, obj := range splitJSON(t, where, data, true) {
			if src, err := DetectSource(obj); !errors.Is(err, ErrUnknownSource) {
				t.Errorf("%s[%d] (%s): DetectSource = %q, %v; want ErrUnknownSource", where, i, reason, src, err)
			}
		}
	}

	err := filepath.WalkDir(publicFixtures, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(publicFixtures, path)
		folder, name := filepath.ToSlash(filepath.Dir(rel)), d.Name()
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ft := tally(folder)
		ft.files++
		switch folder {
		case ".":
			ft.skipped["index (SOURCES.md), not data"]++
		case "sigma":
			ft.skipped["sigma rule / rule index, not a record"]++
		case "o365-audit/sekoia-o365":
			check(ft, rel, sekoiaMessage(t, rel, data), SourceAudit)
		case "graph/sekoia-azure-ad-diagnostic", "graph/elastic-integrations-azure-identity-protection":
			var lines [][]byte
			if strings.HasPrefix(folder, "graph/sekoia") {
				lines = [][]byte{sekoiaMessage(t, rel, data)}
			} else {
				lines = ndjson(data)
			}
			for i, raw := range lines {
				where := fmt.Sprintf("%s:%d", rel, i+1)
				var env struct {
					Category string `json:"category"`
				}
				if err := json.Unmarshal(raw, &env); err != nil || env.Category == "" {
					t.Errorf("%s: not a diagnostic envelope: %v", where, err)
					continue
				}
				if src, ok := diagnosticCategories[env.Category]; ok {
					check(ft, where, raw, src)
				} else {
					notRecord(ft, where, raw, "diagnostic category "+env.Category+": not a Responder feed")
				}
			}
		case "graph/sekoia-entraid-graphapi":
			raw := sekoiaMessage(t, rel, data)
			rec, _ := unwrapForTest(t, raw)
			if rec["activityDisplayName"] != nil {
				notRecord(ft, rel, raw, "Graph directoryAudit: not a Responder feed")
			} else {
				check(ft, rel, raw, SourceSignIn)
			}
		case "o365-audit/elastic-beats":
			for i, raw := range ndjson(data) {
				check(ft, fmt.Sprintf("%s:%d", rel, i+1), raw, SourceAudit)
			}
		default:
			rules, ok := fixtureRules[folder]
			if !ok {
				t.Errorf("%s: fixture folder %q is not classified in this test", rel, folder)
				return nil
			}
			var rule *fixtureRule
			for i := range rules {
				if strings.Contains(name, rules[i].match) {
					rule = &rules[i]
					break
				}
			}
			if rule == nil {
				t.Errorf("%s: fixture file is not classified in this test", rel)
				return nil
			}
			switch rule.format {
			case fmtJSON:
				for i, raw := range splitJSON(t, rel, data, false) {
					check(ft, fmt.Sprintf("%s[%d]", rel, i), raw, rule.want)
				}
			case fmtNotRecord:
				notRecord(ft, rel, data, rule.reason)
			case fmtInvalid:
				ft.skipped["invalid JSON as published ("+rule.reason+"), clean error asserted"]++
				_, err := Normalize("fixture-tenant", data)
				var syntax *json.SyntaxError
				if !errors.As(err, &syntax) || !strings.Contains(err.Error(), "decode record") {
					t.Errorf("%s: Normalize error = %v; want a decode error wrapping *json.SyntaxError", rel, err)
				} else {
					t.Logf("%s: %v (as expected)", rel, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", publicFixtures, err)
	}

	folders := make([]string, 0, len(tallies))
	total := 0
	for f, ft := range tallies {
		folders = append(folders, f)
		total += ft.records
	}
	sort.Strings(folders)
	for _, f := range folders {
		ft := tallies[f]
		t.Logf("%-55s files %3d  records %3d  user %3d  ip %3d  %v  skipped %v", f, ft.files, ft.records, ft.withUser, ft.withIP, ft.sources, ft.skipped)
	}
	t.Logf("total records normalised: %d", total)
	for _, f := range []string{"o365-audit/sekoia-o365", "o365-audit/elastic-beats", "o365-audit/ms-docs", "o365-audit/graph2otel",
		"graph/ms-graph-docs", "graph/graph2otel", "graph/sekoia-entraid-graphapi", "graph/sekoia-azure-ad-diagnostic",
		"graph/elastic-integrations-azure-identity-protection"} {
		if tallies[f] == nil || tallies[f].records == 0 {
			t.Errorf("folder %s yielded no records", f)
		}
	}
}

// sekoiaMessage returns the raw record a SEKOIA test file wraps as a JSON string.
func sekoiaMessage(t *testing.T, where string, data []byte) []byte {
	t.Helper()
	var f struct {
		Input struct {
			Message *string `json:"message"`
		} `json:"input"`
	}
	if err := json.Unmarshal(data, &f); err != nil || f.Input.Message == nil {
		t.Errorf("%s: not a SEKOIA test file (input.message): %v", where, err)
		return nil
	}
	return []byte(*f.Input.Message)
}

// ndjson splits one record per line, ignoring blank lines.
func ndjson(data []byte) [][]byte {
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// splitJSON returns the records of a JSON file: the elements of an array or of a
// Graph list response's value, else the object itself. withWrapper also returns
// the list response itself.
func splitJSON(t *testing.T, where string, data []byte, withWrapper bool) []json.RawMessage {
	t.Helper()
	var arr []json.RawMessage
	if json.Unmarshal(data, &arr) == nil {
		return arr
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	var value []json.RawMessage
	if v := bytes.TrimSpace(obj["value"]); len(v) == 0 || v[0] != '[' || json.Unmarshal(v, &value) != nil {
		return []json.RawMessage{data} // a single record (or a non-list response)
	}
	if withWrapper {
		return append(value, data)
	}
	return value
}

// unwrapForTest is the test's own unwrapping: diagnostic envelope → properties,
// Graph audit query record → auditData.
func unwrapForTest(t *testing.T, raw []byte) (rec, wrapper map[string]any) {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Errorf("unwrap: %v", err)
		return nil, nil
	}
	if p, ok := top["properties"].(map[string]any); ok && top["category"] != nil {
		return p, top
	}
	if a, ok := top["auditData"].(map[string]any); ok {
		return a, top
	}
	return top, nil
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// oracleIP reads an address the way the standard net package would, independently
// of normalize.go: host[:port] or [host]:port, unspecified addresses do not count.
func oracleIP(v string) net.IP {
	v = strings.TrimSpace(v)
	host := v
	if h, _, err := net.SplitHostPort(v); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return ip
}
