package event

import (
	"encoding/json"
	"time"
)

// Source names the feed an event came from.
type Source string

// The sources Responder ingests.
const (
	SourceAudit         Source = "audit"          // Office 365 Management Activity API record
	SourceSignIn        Source = "signin"         // Graph auditLogs/signIns
	SourceRiskDetection Source = "risk_detection" // Graph identityProtection/riskDetections
	SourceRiskyUser     Source = "risky_user"     // Graph identityProtection/riskyUsers
	SourceAlert         Source = "alert"          // Graph security/alerts_v2 (Defender XDR)
)

// Valid reports whether s is one of the known sources.
func (s Source) Valid() bool {
	switch s {
	case SourceAudit, SourceSignIn, SourceRiskDetection, SourceRiskyUser, SourceAlert:
		return true
	}
	return false
}

// Envelope is the common shape of every event on the EVENTS stream.
type Envelope struct {
	// ID is unique per source state: the record id, or for records that change
	// over time (risk detections, risky users) the id plus the state's timestamp.
	// It is the Nats-Msg-Id of the published event, so re-polls deduplicate.
	ID       string    `json:"id"`
	Source   Source    `json:"source"`
	Kind     string    `json:"kind"` // Operation, riskEventType, riskLevel…
	Time     time.Time `json:"time"`
	TenantID string    `json:"tenant_id"`
	User     string    `json:"user,omitempty"`    // UPN
	UserID   string    `json:"user_id,omitempty"` // Entra object id
	IP       string    `json:"ip,omitempty"`      // bare address, no port
	// Mailbox is the mailbox an Exchange record is about, as the record names
	// it (a UPN, or one of Exchange's identity forms: path form, alias, display
	// name, legacyExchangeDN, smtp: address, GUID); User is then whoever acted,
	// who may be a delegate or an admin. Empty for other records.
	Mailbox string `json:"mailbox,omitempty"`
	// RuleID is the inbox rule a mailbox audit record concerns, as its exact
	// decimal digits (64-bit ids do not survive a float64).
	RuleID string `json:"rule_id,omitempty"`
	// Alert is what a Defender XDR alert's evidence names (alert.go); nil
	// for other sources.
	Alert *Alert          `json:"alert,omitempty"`
	Raw   json.RawMessage `json:"raw"`
}
