// Package demo runs the whole engine against the built-in emulated tenant: embedded
// NATS in a temporary directory, the emulator seeded with a few users, the shipped
// playbooks, the feeds a scenario's playbook listens to, the matcher, the action
// workers, the approval service and the audit writer.
//
// A scenario plays one shipped playbook's attack with the emulator's scenario API
// (internal/m365sim): the default, risky-user, makes the tenant raise a high-risk
// detection for high-risk-user; the others are named after their playbooks
// (external-forwarding-rule, external-mailbox-forwarding, leaked-credentials,
// mfa-fatigue, password-spray, risky-signin-anonymous-ip). Run plays one, prints
// the timeline of events and audit records until every step of the playbook has
// ended (a step behind approval: until it is pending, or, with Options.Approve,
// until the local administrator's approval has let it run), checks the effect of
// each step in the tenant and verifies the audit chain. RunAll plays each on a
// fresh sandbox and prints a summary table.
//
// Every scenario is bounded by Options.Timeout and fails with the reason (which
// step did not finish, which feed delivered nothing, which playbook did not fire);
// a scenario whose playbook is disabled fails at once with ErrPlaybookDisabled.
//
// `responder demo` and the end-to-end tests run this same code.
package demo
