// Package approval owns requests that wait for people: the rules that say when
// a request needs approval (Rules.Need, a pure function), the store of pending
// approvals in the shared KV bucket (Store), and the Service that takes signed
// approve, deny and list commands from analysts over NATS, audits every
// decision and expires what nobody decided in time.
//
// # Guarantees
//
// All state lives in KV and every change is a compare-and-set on the entry's
// revision, so decisions survive restarts and stay correct with several engine
// processes: two approvers racing both count, an approval racing a denial or an
// expiry loses cleanly. The requester can never approve their own request
// (compared by name and by key), and an action kind can require two distinct
// approvers. An approved request is released to the action workers exactly once
// (Store.Release, a compare-and-set keyed to the message's stream sequence so a
// redelivery of the released message is still accepted).
//
// The package never executes an action and never imports the Graph SDK.
package approval
