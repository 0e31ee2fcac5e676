// Package console is the analysts' web console: server-rendered pages
// (html/template, assets embedded, a little JavaScript, no build step) that
// `responder serve` mounts at / on the operations address.
//
// # Sign-in
//
// People sign in with Entra ID: the OpenID Connect authorization-code flow
// with PKCE (S256) against the tenant's authority, through
// github.com/coreos/go-oidc (discovery, the ID token's RS256 signature
// against the tenant's published keys, issuer, audience, expiry) and
// golang.org/x/oauth2 (the code exchange); the console checks the nonce
// itself. A person is who the ID token's oid claim says; the analysts file
// (analyst.Directory.Person) gives them a role, and someone it does not list
// gets a 403 page. Their rights are looked up again on every request, so a
// person removed from the file is refused at once.
//
// # Sessions
//
// A session is a random 256-bit id in a Secure, HttpOnly, SameSite=Strict
// cookie, held in memory (a restart signs everyone out), with an idle and an
// absolute timeout. Every state change is a POST carrying the session's CSRF
// token (and, when the browser sends one, a same-origin Origin header); a
// POST without it is refused and audited. The pre-sign-in cookie that binds
// the browser to its login (state, nonce, PKCE verifier stay on the server)
// is SameSite=Lax, because the identity provider's redirect back is a
// cross-site navigation. Browsers treat http://127.0.0.1 and localhost as
// secure contexts, so Secure cookies work on the default loopback address.
//
// # Acting for a person
//
// Every click that changes something becomes a signed message (an action
// request, an approval command) signed with the console's own key and
// naming the person (audit.Actor: Entra object id, UPN, the ID token's uti as
// evidence). The engine verifies the console's signature, resolves the
// person in the analysts file and checks what their role may do
// (analyst.Verifier.OnBehalf), whatever the page showed; four-eyes counts
// distinct Entra identities. A generated password comes back sealed to a
// one-time key of the console, is shown once on the result page and kept
// nowhere.
//
// The package holds no global state; its only goroutines are request
// handlers (the event stream ends with its request).
package console
