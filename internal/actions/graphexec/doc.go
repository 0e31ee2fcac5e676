// Package graphexec carries out action requests through Microsoft Graph with the
// msgraph-sdk-go client. It is the one place where Graph failures are classified
// (permanent, transient, throttled) into *actions.Error, keeping Microsoft's error
// code, request ids, Retry-After and, on 403, the permission the call needs.
//
// It never retries by itself beyond the SDK's bounded middleware retries; the worker
// decides about redelivery.
package graphexec
