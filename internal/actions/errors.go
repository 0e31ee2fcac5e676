package actions

import (
	"errors"
	"fmt"
	"time"
)

// Class is how a failure is handled, decided once at the Graph edge.
type Class int

// Failure classes.
const (
	Permanent Class = iota // 4xx other than 429: never retried
	Transient              // 5xx, resets, timeouts: bounded retries with jitter
	Throttled              // 429 (or Microsoft's 403 AF429): retried after Retry-After or backoff
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Throttled:
		return "throttled"
	}
	return "permanent"
}

// Error is a classified Microsoft failure. Its text never includes a secret or a
// token: only status, Microsoft's code and message, and the permission it lacks.
type Error struct {
	Class           Class
	Status          int    // HTTP status, 0 for transport failures
	Code            string // Microsoft's error code (Authorization_RequestDenied…)
	Message         string
	RequestID       string
	ClientRequestID string
	RetryAfter      time.Duration // 0 when Microsoft sent none
	// Permission names the application permission the call needs, set on 403.
	Permission string
	Err        error // underlying transport error, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("graph %s failure", e.Class)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Permission != "" {
		s += " (needs " + e.Permission + ")"
	}
	if e.Err != nil && e.Code == "" {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// AsError extracts a classified error; an unclassified error is treated as
// transient (a network fault the edge did not recognise).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Class: Transient, Message: "unclassified", Err: err}
}

// Backoff is the delay before retry attempt n (1-based) of a failure: Microsoft's
// Retry-After when it sent one, else exponential from base with full jitter, capped.
func Backoff(e *Error, attempt int, base, max time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	if e.RetryAfter > 0 {
		if e.RetryAfter > max {
			return max
		}
		return e.RetryAfter
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if jitter != nil {
		d = d/2 + jitter(d/2)
	}
	return d
}
