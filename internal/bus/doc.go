// Package bus owns Responder's NATS backbone: the embedded server (or the connection
// to an external cluster), and the definitions of every stream, consumer and KV bucket
// with the subjects they carry.
//
// Subjects always carry the tenant id as their second token so that one cluster can
// serve several tenants and NATS permissions can scope a user to one tenant. Subjects
// are built only by the functions here, never assembled ad hoc elsewhere.
//
// The package never imports the Graph SDK.
package bus
