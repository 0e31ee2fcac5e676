// Package m365sim is a local Microsoft 365 tenant that speaks the real wire
// protocols, so that the real msgraph-sdk-go, azidentity and a plain HTTP
// client run against it exactly as they would against Microsoft. Every test,
// `responder demo`, `serve --sandbox` and `responder sim` (RunStandalone) use it.
//
// # What it emulates
//
// One TLS server on loopback (a CA generated per tenant; Info, CertPool,
// HTTPClient, WriteCAFile) with one mux at the root, because MSAL takes the first
// path segment of the authority as the tenant:
//
//   - Entra ID: GET /{tenant}/v2.0/.well-known/openid-configuration (issuer on
//     the same origin, as MSAL checks) and POST /{tenant}/oauth2/v2.0/token for
//     client credentials with a client secret or a private_key_jwt assertion
//     (PS256 as MSAL sends it, or RS256), verified against the certificate
//     registered with AddApp (x5t#S256 or x5t). Scopes must be
//     "<resource>/.default" for https://graph.microsoft.com,
//     https://manage.office.com or https://outlook.office365.com. Errors are AADSTS bodies (7000215 bad secret,
//     700027 unknown certificate, 700016 unknown app, 1002012 scope without
//     /.default, 500011 unknown resource, 90002 unknown tenant).
//   - Tokens are JWTs with aud, tid, appid, roles (the app's granted roles for
//     that resource), exp (TokenLifetime) and xms_cc when the client asked for
//     CAE. Every resource call checks the token: missing, malformed, wrong
//     audience, expired → 401 InvalidAuthenticationToken with WWW-Authenticate;
//     ExpireTokens revokes every issued token, answered with a CAE claims
//     challenge (which the Graph SDK follows by fetching a new token) or a plain
//     401 for non-CAE tokens.
//   - Each route needs a permission; a missing one gives the owning service's
//     403: Entra Authorization_RequestDenied "Insufficient privileges…",
//     Exchange ErrorAccessDenied, Conditional Access AccessDenied "…required
//     scopes are missing in the token.", sign-in reports
//     Authentication_MSGraphPermissionMissing naming the permission, Identity
//     Protection Forbidden naming it, Management API AF10001 naming it. The
//     wire log's MissingPermission names the permission in every case.
//   - Graph v1.0 (stateful): users (id or UPN, default property set unless
//     $select, $filter/$top/absolute @odata.nextLink with $skiptoken), PATCH
//     accountEnabled / passwordProfile (complexity rule; privileged targets need
//     a privileged directory role on the app, as Microsoft requires),
//     revokeSignInSessions (recorded in User), domains, directoryRoles and
//     members, users/{id}/memberOf, inbox messageRules (CRUD), messages (list,
//     get, $filter with doubled single quotes in literals, $search, $orderby/InefficientFilter,
//     $skip paging, delete, permanentDelete, move with a new id),
//     conditionalAccess namedLocations and policies (limits below),
//     auditLogs/signIns (newest first; versions that change later,
//     UpdateSignIn / CompleteSignInMFA: signinupdate.go), identityProtection
//     riskDetections and riskyUsers (confirmCompromised, dismiss), the Entra ID
//     edition (Options.Licence / SetLicence: P1 → riskyUsers 403, Free → also
//     riskDetections and signIns 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant:
//     licence.go), deleted users (DeleteUser, directory/deletedItems/{id};
//     Identity Protection records stay: userdelete.go), and $batch
//     (≤ 20 steps, unique ids, dependsOn with 424, per-step status, faults and
//     throttling applied per step). Ids are taken from EscapedPath, so ids
//     holding %2F survive. Request bodies are gunzipped (kiota compresses all).
//   - Office 365 Management Activity API: subscriptions/start|stop|list|
//     content|notifications, content blobs, resources/dlpSensitiveTypes; window
//     rules (both or neither, start < end and ≤ 24 h apart → AF20055; start
//     older than 7 days → AF20030), NextPageUri paging (page size
//     SetContentPageSize), AF20020/22/23/24/13/10/31/50/51/52, AF429 (403).
//     Records use zone-less CreationTime and Exchange ClientIP with a port.
//   - Exchange Online admin API: POST /adminapi/beta/{tenant id or domain}/
//     InvokeCommand with {"CmdletInput":{"CmdletName","Parameters"}}, the
//     ExchangeOnlineManagement v3 module's endpoint. Get-Mailbox (Identity:
//     object id, UPN, SMTP address, alias or display name; $select) and
//     Set-Mailbox ForwardingSmtpAddress / ForwardingAddress /
//     DeliverToMailboxAndForward act on the forwarding InjectMailboxForwarding
//     sets (User reports it). Tokens must have the outlook.office365.com
//     audience (else a bare 401 with Exchange's challenge) and the role
//     Exchange.ManageAsApp (else 403); the app also needs an Exchange
//     directory role (App.DirectoryRoles: Exchange Recipient Administrator,
//     which the default app holds, Exchange Administrator or Global
//     Administrator; Get- cmdlets also Global Reader). Cmdlet failures are
//     OData errors whose details carry "ErrorId|ExceptionType|text", e.g. 404
//     Ex6F9304|…ManagementObjectNotFoundException for an unknown identity.
//     RetireInvokeCommand(404|410) makes the endpoint answer as a retired
//     one would (no cmdlet detail), for the engine's ExchangeInvokeCommandGone.
//     The Tenant Allow/Block List sender cmdlets (exchange_tabl.go):
//     New-/Get-/Remove-TenantAllowBlockListItems -ListType Sender, with the
//     limits of "Allow or block email using the Tenant Allow/Block List"
//     (500 block entries without Defender for Office 365, 20 entries a call,
//     a block's expiration date at most 90 days ahead and not past,
//     ExpirationDate xor NoExpiration) and its roles (Security
//     Administrator, which the default app holds, Exchange Administrator,
//     Global Administrator, Security Operator; readers may Get-).
//   - Defender XDR alerts (alerts.go): GET /security/alerts_v2 and /{id}
//     (SecurityAlert.Read.All), newest first, $filter on the documented
//     properties (lastUpdateDateTime, createdDateTime, severity,
//     serviceSource, status…), $top and $skip with @odata.nextLink;
//     InjectAlert builds alerts with device, file, user, mailbox,
//     analysed-message, URL and IP evidence; UpdateAlert moves
//     lastUpdateDateTime as the service does on any change.
//   - Microsoft Defender for Endpoint API (defender.go), under /api/ with a
//     token for https://api.securitycenter.microsoft.com (roles Machine.Isolate,
//     Machine.Read.All, Ti.ReadWrite.All): machines (a few dozen seeded
//     workstations and servers, a domain controller, a device tagged
//     responder-protected; $filter), isolate/unisolate as machine actions
//     Pending → InProgress → final on the tenant's clock
//     (SetMachineActionTiming, SetMachineActionOutcome, /_sim/defender/…),
//     indicators (submit or update, import ≤ 500, delete, expiry, 15,000
//     active, CIDR refused) and 100 calls/min + 1,500/h per API, 30/min for
//     the import, 429 with Retry-After (SetDefenderLimits). Sources in
//     defender.go.
//   - $filter and $select are checked against each resource's documented
//     properties and operators (schema.go, which names Microsoft's texts): an
//     unknown property is 400 "Invalid filter clause: Could not find a
//     property named 'x' on type 'microsoft.graph.t'." ($select: "Parsing
//     OData Select and Expand failed: …"; Outlook: RequestBroker--ParseUri), an
//     operator the property does not support is 400 Request_UnsupportedQuery
//     "Unsupported or invalid query filter clause specified for property 'x'
//     of resource 'User'." on directory objects, BadRequest "Invalid filter
//     clause" on reports, Identity Protection and Conditional Access, and
//     ErrorInvalidUrlQueryFilter on Outlook. "in" and enum literals
//     (microsoft.graph.riskLevel'high') parse.
//   - IP named locations refuse private, loopback, link-local, shared and
//     multicast ranges (public ranges only, as Entra's location condition
//     says) and an update that would leave ipRanges empty.
//   - Errors carry request-id and client-request-id (headers and innerError)
//     and a zone-less innerError.date, as Graph sends them.
//
// # Test controls
//
// Go API and admin HTTP API under /_sim/ (see admin.go): AddUser, AddApp,
// SetRoles, ExpireTokens, AddFault (latency+jitter, status with code/message,
// Retry-After or none, connection reset, count), WireLog/ResetWireLog (method,
// path, query, decoded body, status, mailbox and in-flight count per mailbox,
// app id, batch id), injection (InjectRiskDetection, InjectSignIn,
// InjectForwardingRule → New-InboxRule, InjectMailboxForwarding → Set-Mailbox,
// InjectPhishing, AddAuditBlob/AddAuditRecords, AddRaw* for published
// payloads), each made visible after Options.AvailabilityDelay, and
// throttling (SetThrottling, SetLimits) with the clock from Options.Now.
//
// # Default limits and their sources
//
// All from Microsoft Learn "Microsoft Graph service-specific throttling limits"
// unless noted (see shared/ms365-api-notes.md §5.2):
//   - Entra ID identity and access: resource units / 10 s per app and tenant
//     by tenant size (< 50 users 3,500; 50–500 5,000; more 8,000); cost GET users 2, other GET 1, $select −1,
//     $top < 20 −1, $expand +1, writes 1; writes 3,000 / 2 min 30 s per app and
//     tenant, 18,000 / 5 min per tenant; 429 with Retry-After,
//     x-ms-throttle-scope and x-ms-throttle-information.
//   - Outlook: 10,000 requests / 10 min and 4 concurrent requests per app and
//     mailbox (429 ApplicationThrottled "…MailboxConcurrency limit.").
//   - Identity Protection and Conditional Access: 1 request / s per tenant,
//     429 without Retry-After.
//   - Identity and access reports (sign-ins): 5 requests / 10 s per app and tenant.
//   - Management Activity API: 2,000 requests / min per tenant (Management
//     Activity API reference, "API throttling"), one quota per
//     PublisherIdentifier (calls without it share one); AF429 with status 403 as in the
//     troubleshooting guide.
//   - Conditional Access: at most 195 named locations, 2,000 IP ranges per
//     location, masks greater than /8 (Entra "location condition" docs).
//   - JSON batching: 20 requests (json-batching concept page).
//
// # Permission details worth knowing
//
// PATCH accountEnabled needs User.EnableDisableAccount.All together with
// User.Read.All (or User.ReadWrite.All / Directory.ReadWrite.All);
// passwordProfile needs User-PasswordProfile.ReadWrite.All (or the broader
// ones); revokeSignInSessions accepts User.RevokeSessions.All,
// User.ReadWrite.All or Directory.ReadWrite.All. Changing accountEnabled or the
// password of a member of a privileged directory role (Global Administrator,
// Privileged Role/Authentication Administrator, User/Exchange/Security/CA/
// Authentication Administrator) needs App.DirectoryRoles to hold "Privileged
// Authentication Administrator" or "Global Administrator", else 403
// Authorization_RequestDenied, as in Entra ID; any app-only password reset
// also needs "User Administrator" (or one of those two), which the default
// app holds. An app's directory roles are listed by
// /roleManagement/directory/roleAssignments with its service principal's id
// (the token's oid) as principalId. SetRoles affects new tokens
// only; follow it with ExpireTokens to make a running client pick it up.
// Advanced user filters (endswith, ne, not, contains) need the
// ConsistencyLevel: eventual header.
//
// # What it does not do (approximations)
//
// Tokens are HS256-signed (no JWKS); nobody but the emulator validates them.
// Webhooks are recorded but never validated or notified; notifications list is
// empty. Content created before a subscription started or while it was stopped
// is never listed, and starts are throttled to one per 15 minutes per content
// type, as Microsoft does (manage_subs.go; tests that subscribed before their
// content call StartSubscription). A P1 tenant's limited risk-detection
// information is not modelled.
// Exact wording of some messages is inferred ([U] in the notes): the Exchange
// admin API's 403 for a missing permission or role, the error ids of its
// ParameterBinding, access-denied and CommandNotFound failures (ExSim…),
// Identity
// Protection 403, CA validation errors, AF2003x/AF2005x texts, the Management
// API 401 body. No delta queries, $expand, $count, $orderby (beyond the Outlook
// rule), lambda filters (any/all → 400), groups, or beta endpoints. Global
// faults (PathPrefix "") skip the token endpoint; name it to fault it. The
// Outlook concurrency count is per mailbox across apps (Microsoft: per app and
// mailbox). The Entra app-wide (150,000 RU / 20 s, 35,000 writes / 5 min)
// budgets are not modelled: they only matter across tenants.
//
// # Concurrency
//
// A Tenant is safe for concurrent use. Its goroutines (the server and its
// handlers) are owned by it and stopped by Close, which waits for them. It has
// no global state: many tenants can run in one process.
package m365sim
