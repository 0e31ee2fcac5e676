package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// FuzzNormalize feeds arbitrary bytes to Normalize: it must never panic, and an
// envelope it returns must satisfy the contract every consumer relies on. The seed
// corpus is testdata/fuzz/FuzzNormalize plus the records of the table tests.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{auditInboxRule, auditMailbox, auditSystem, auditAAD, auditQueryRecord,
		signInOK, signInFail, signInNoStatus, riskDet, riskDetNoLast, riskyUser, diagSignIn, diagRiskyUser,
		diagRiskNoTime, diagAuditLogs, directoryAudit, caPolicy} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		env, err := Normalize("fuzz-tenant", data)
		if !bytes.Equal(data, orig) {
			t.Fatal("Normalize modified its input")
		}
		src, detectErr := DetectSource(data)
		if err != nil {
			if detectErr == nil && errors.Is(err, ErrUnknownSource) {
				t.Fatalf("DetectSource = %q but Normalize says unknown source: %v", src, err)
			}
			return
		}
		if detectErr != nil || src != env.Source {
			t.Fatalf("DetectSource = %q, %v; Normalize gave source %q", src, detectErr, env.Source)
		}
		if !env.Source.Valid() || env.ID == "" || env.Kind == "" || env.TenantID == "" {
			t.Fatalf("incomplete envelope: %+v", fieldsOf(env))
		}
		if env.Time.IsZero() || env.Time.Location() != time.UTC {
			t.Fatalf("Time = %v, want non-zero UTC", env.Time)
		}
		if !bytes.Equal(env.Raw, data) {
			t.Fatal("Raw differs from the input")
		}
		if env.IP != "" {
			a, err := netip.ParseAddr(env.IP)
			if err != nil || a.String() != env.IP || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() {
				t.Fatalf("IP %q is not a bare, canonical, unmapped address (%v)", env.IP, err)
			}
		}
		if env.User != "" && !isUPNLike(env.User) {
			t.Fatalf("User %q is not UPN-like", env.User)
		}
		if env.UserID != "" && !isGUID(env.UserID) {
			t.Fatalf("UserID %q is not a GUID", env.UserID)
		}
		if _, err := json.Marshal(env); err != nil {
			t.Fatalf("envelope does not encode: %v", err)
		}
		again, err := NormalizeAs(env.Source, "fuzz-tenant", data)
		if err != nil || fieldsOf(again) != fieldsOf(env) {
			t.Fatalf("NormalizeAs(%q) = %+v, %v; Normalize gave %+v", env.Source, fieldsOf(again), err, fieldsOf(env))
		}
	})
}
