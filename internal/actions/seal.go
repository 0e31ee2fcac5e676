package actions

import "github.com/nats-io/nkeys"

// sealed is a secret sealed to its requester: the box and the one-time
// engine key that sealed it.
type sealed struct {
	box []byte
	by  string
}

// sealFor decides what becomes of a secret an action generated (the new
// password of reset_password) and says so for the audit detail. Only the
// analyst who asked, and asked directly, gets it, sealed to the X25519 key
// their request named: nobody else on the bus can read it. A playbook's or
// the engine's request has no one waiting, and a request released by an
// approval was asked for by someone who may no longer be there (their
// one-time key lived in the `responder act` that timed out): in both cases
// the password is discarded unseen and the user regains access through
// self-service password reset or an administrator (the reset forces a change
// at next sign-in anyway).
func sealFor(j *job, secret string) (*sealed, string) {
	switch {
	case j.req.RequestedBy.Kind != "analyst":
		return nil, "; requested by " + j.req.RequestedBy.Kind + " " + j.req.RequestedBy.Name +
			", so the password was discarded unseen: the user regains access through self-service password reset or an administrator"
	case j.released:
		return nil, "; the request waited for approval, so the password was discarded unseen: the user regains access through self-service password reset or an administrator"
	case j.req.SealTo == "":
		return nil, "; no seal_to key, so the password was discarded unseen"
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, "; the password could not be sealed, so it was discarded unseen"
	}
	box, err := kp.Seal([]byte(secret), j.req.SealTo)
	by, perr := kp.PublicKey()
	if err != nil || perr != nil {
		return nil, "; the password could not be sealed, so it was discarded unseen"
	}
	return &sealed{box: box, by: by}, "; the password was sealed to the requester's key and returned to them only"
}

// OpenSecret opens an outcome's sealed secret with the curve key whose public
// half the request named as seal_to.
func OpenSecret(o Outcome, kp nkeys.KeyPair) (string, error) {
	b, err := kp.Open(o.Sealed, o.SealedBy)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
