package m365sim

import "time"

// Lateness is how late a scenario's records reach the APIs, with their original
// timestamps. Microsoft documents:
//   - risk detections: "Real-time detections may not show up in reporting for 5
//     to 10 minutes. Offline detections may not show up in reporting for 48
//     hours" (https://learn.microsoft.com/entra/id-protection/concept-identity-protection-risks);
//     the riskyUsers state follows the detection that raises it;
//   - sign-ins: p95 2 minutes, p99 5 minutes (retired "Microsoft Entra
//     reporting latencies" page, https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-latencies).
//
// A zero field publishes at once (after Options.AvailabilityDelay).
type Lateness struct {
	Realtime time.Duration `json:"realtime,omitempty"` // realtime and nearRealtime detections
	Offline  time.Duration `json:"offline,omitempty"`  // offline detections
	SignIn   time.Duration `json:"signIn,omitempty"`
}

// MicrosoftLateness is the worst lateness Microsoft documents.
func MicrosoftLateness() Lateness {
	return Lateness{Realtime: 10 * time.Minute, Offline: 48 * time.Hour, SignIn: 5 * time.Minute}
}

// Detection returns d published as late as its detectionTimingType says
// (realtime when unset); a Late already set is kept.
func (l Lateness) Detection(d RiskDetection) RiskDetection {
	if d.Late > 0 {
		return d
	}
	d.Late = l.Realtime
	if d.DetectionTimingType == "offline" {
		d.Late = l.Offline
	}
	return d
}

// SignInLate returns s published l.SignIn late; a Late already set is kept.
func (l Lateness) SignInLate(s SignIn) SignIn {
	if s.Late <= 0 {
		s.Late = l.SignIn
	}
	return s
}
