// Package doctor checks, with the configured credentials, that the application
// holds the Microsoft permissions every configured feed and action needs, and
// names exactly what is missing.
//
// It gets one token per audience (Microsoft Graph, Office 365 Management API,
// Exchange Online admin API when its scope is given) and reads the granted
// application roles from the token's "roles" claim. The Exchange role that
// the mailbox forwarding actions also need is a directory role assignment,
// not in the token: doctor cannot check it. The
// token's signature is not verified: doctor just asked the authority for this
// token over TLS, for itself, and only reads what it was granted; nothing is
// authorised on the strength of it. Tokens are never printed or logged.
//
// The package uses azcore's TokenCredential interface only; it does not import
// the Graph SDK (nor internal/m365, which does): the caller builds the
// credential (m365.Credentials.TokenCredential) and the scopes.
package doctor
