package bus

import (
	"encoding/base64"
	"reflect"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// nkeyAuth admits the embedded server's clients by nkey: a client proves it
// holds a listed key by signing the server's nonce (as nats-server's own nkey
// authentication does, auth.go: base64 URL or standard signature over the
// INFO nonce), and gets that key's rights. SetIdentities swaps the list at run
// time without a server reload: nats-server 2.15's ReloadOptions replaces the
// options that a direct get reads without its lock (stream.go,
// getDirectRequest: s.opts.MaxPending), a data race on every analysts-file
// change while KV reads run.
type nkeyAuth struct {
	mu    sync.RWMutex
	users map[string]*server.Permissions // public key → rights (nil: everything)
}

func newNkeyAuth(users []*server.NkeyUser) *nkeyAuth {
	a := &nkeyAuth{}
	a.set(users)
	return a
}

// Check implements server.Authentication. The read lock is held until the
// client is registered, so that a swap (set) either precedes the check or
// sees the client with its key when it looks for connections to close.
func (a *nkeyAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || o.Nkey == "" || o.Sig == "" {
		return false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	perms, ok := a.users[o.Nkey]
	if !ok {
		return false
	}
	pub, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 || pub.Verify(nonce, sig) != nil {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Nkey, Permissions: perms})
	return true
}

// set replaces the users and returns the keys that lost access or whose
// rights changed: their open connections must be closed (a client reconnects
// with its new rights, or is refused).
func (a *nkeyAuth) set(users []*server.NkeyUser) map[string]bool {
	next := make(map[string]*server.Permissions, len(users))
	for _, u := range users {
		next[u.Nkey] = u.Permissions
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := map[string]bool{}
	for k, p := range a.users {
		if q, ok := next[k]; !ok || !reflect.DeepEqual(p, q) {
			changed[k] = true
		}
	}
	a.users = next
	return changed
}

// closeConnections closes every open client connection authenticated with
// one of keys. The server names a connection's nkey as its authorized user.
func closeConnections(srv *server.Server, keys map[string]bool) error {
	if len(keys) == 0 {
		return nil
	}
	cz, err := srv.Connz(&server.ConnzOptions{Username: true, State: server.ConnOpen, Limit: 1 << 20})
	if err != nil {
		return err
	}
	for _, ci := range cz.Conns {
		if keys[ci.AuthorizedUser] {
			_ = srv.DisconnectClientByID(ci.Cid) // gone already: nothing to close
		}
	}
	return nil
}
