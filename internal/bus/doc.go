// Package bus owns Responder's NATS backbone: the embedded server (or the connection
// to an external cluster), and the definitions of every stream, consumer and KV bucket
// with the subjects they carry.
//
// Subjects always carry the tenant id as their second token so that one cluster can
// serve several tenants and NATS permissions can scope a user to one tenant. Subjects
// are built only by the functions here, never assembled ad hoc elsewhere.
//
// Every connection authenticates (auth.go): the embedded server has no
// anonymous user; its users are the engine key (everything) and the keys of
// the analysts directory with the permissions of their role (Permissions),
// reloaded while running (Bus.SetIdentities). Each identity has its own inbox
// prefix (InboxPrefix) and an analyst its own result subject
// (ResultSubjectFor). docs/nats.md and docs/nats-server.conf give the same
// rules to an external cluster.
//
// The package never imports the Graph SDK.
package bus
