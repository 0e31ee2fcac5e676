// Package m365 builds the clients Responder uses to reach a Microsoft 365 tenant from
// its credentials: an azidentity token credential (client secret, or certificate and
// private key), the msgraph-sdk-go client, and a plain HTTP client with bearer tokens
// for the Office 365 Management Activity API.
//
// Base URLs can point at a sovereign cloud or at the local emulator. Secrets never
// appear in an error or a log line built here: errors name the setting, not its value.
package m365
