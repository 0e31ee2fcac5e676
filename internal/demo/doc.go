// Package demo runs the whole engine against the built-in emulated tenant: embedded
// NATS in a temporary directory, the emulator seeded with a few users, the shipped
// playbooks, the risk feed, the matcher, the action workers and the audit writer.
// It makes the tenant raise a high-risk detection, waits until the playbook has
// contained the user, prints a timeline, and verifies the audit chain.
//
// `responder demo` and the end-to-end tests run this same code.
package demo
