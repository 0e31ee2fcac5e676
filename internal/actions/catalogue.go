package actions

import (
	"slices"
	"strconv"
	"strings"
)

// Name is an action's message name (disable_user); its CLI name uses dashes.
type Name string

// The catalogue.
const (
	DisableUser         Name = "disable_user"
	EnableUser          Name = "enable_user"
	RevokeSessions      Name = "revoke_sessions"
	ResetPassword       Name = "reset_password"
	ConfirmCompromised  Name = "confirm_compromised"
	DismissRisk         Name = "dismiss_risk"
	DisableForwardRules Name = "disable_forward_rules"
	EnableForwardRules  Name = "enable_forward_rules"
	DeleteForwardRules  Name = "delete_forward_rules"
	RestoreForwardRules Name = "restore_forward_rules"
	// Mailbox-level forwarding (Set-Mailbox), through the Exchange Online
	// admin API: Microsoft Graph does not expose it.
	RemoveMailboxForwarding  Name = "remove_mailbox_forwarding"
	RestoreMailboxForwarding Name = "restore_mailbox_forwarding"
	PurgeMail                Name = "purge_mail"
	BlockIP                  Name = "block_ip"
	UnblockIP                Name = "unblock_ip"
	// The Tenant Allow/Block List (senders), through the Exchange Online
	// admin API.
	BlockSender   Name = "block_sender"
	UnblockSender Name = "unblock_sender"
	// Microsoft Defender for Endpoint: device isolation and indicators.
	IsolateDevice   Name = "isolate_device"
	ReleaseDevice   Name = "release_device"
	BlockFile       Name = "block_file"
	BlockURL        Name = "block_url"
	BlockDomain     Name = "block_domain"
	BlockDeviceIP   Name = "block_device_ip"
	RemoveIndicator Name = "remove_indicator"
	Undo            Name = "undo"
)

// Guard names a safety check the worker runs before an action acts.
type Guard string

// Guards.
const (
	// GuardIdentity refuses protected identities (listed users, members of the
	// protected directory roles) to playbooks, and to analysts without an
	// explicit override.
	GuardIdentity Guard = "identity"
	// GuardIP refuses ranges that are too broad or overlap reserved space.
	GuardIP Guard = "ip"
)

// API is the Microsoft API an action calls, which is also the token audience
// doctor checks.
type API string

// APIs.
const (
	APIGraph    API = "graph"
	APIExchange API = "exchange"
	// APIDefender is the Microsoft Defender for Endpoint API
	// (api.securitycenter.microsoft.com, its own token audience).
	APIDefender API = "defender"
	APINone     API = "none" // acts on Responder itself (undo)
)

// Clause is satisfied when any one of its application permissions is granted;
// the first is the least privileged, the one doctor and the README name.
type Clause []string

// Spec is one catalogue entry: everything the worker, the executors, the CLI,
// doctor, the README and the JSON Schema know about an action. It is the one
// source of truth; a completeness test (cmd/responder) fails when any of them
// misses an action.
type Spec struct {
	Name Name
	// CLI is the `responder act` verb ("" for actions no analyst submits
	// directly: the restore_* inverses, issued only by undo).
	CLI string
	// Target is what it acts on: "user", "ip", "message", "request".
	Target      string
	Description string
	// Inverse is the action that undoes this one ("" when irreversible);
	// Irreversible says why not.
	Inverse      Name
	Irreversible string
	// InverseOnly actions are accepted only as the inverse an undo issues from
	// a stored snapshot (params.undo_of names it), never with an analyst's
	// own payload.
	InverseOnly bool
	// API is the Microsoft API it calls (the token audience doctor checks).
	API API
	// Permissions are the application permissions it needs: every clause.
	Permissions []Clause
	// Role is the directory or Exchange role the app's service principal
	// needs besides the permissions ("" none).
	Role string
	// Why explains the permissions, for the README.
	Why string
	// Calls are the Microsoft calls it makes, for the README and dry runs.
	Calls string
	// Args declare the parameters it accepts (besides undo_of): the JSON
	// Schema's per-action rules and `responder act`'s help come from them.
	// Parse validates them into Params' typed fields; without Parse they
	// are parsed by kind into Params.Values, and Check (optional) then
	// checks rules across them.
	Args  []Arg
	Parse func(t Target, params map[string]any) (Params, error)
	Check func(t Target, p Params) error
	// Settings declare the action's own settings (as parameters are
	// declared): serve takes them as --action-setting ACTION.NAME=VALUE and
	// the executor reads them with Settings.Of.
	Settings []Arg
	// RepeatSafe: sending the call twice has the effect of sending it once.
	// Otherwise a redelivery after an interrupted attempt probes Microsoft
	// (Handler.Probe) before repeating.
	RepeatSafe bool
	// BlastLimit is the default most requests per blast-radius window (0 =
	// unlimited).
	BlastLimit int
	// Guards are the safety checks that apply.
	Guards []Guard
	// Expires: the action takes params.expires, after which the engine
	// requests its inverse.
	Expires bool
	// Meta actions act on Responder itself (undo): dry run, blast radius and
	// approval apply to the request they issue, not to them.
	Meta bool
	// MailboxTarget: target.user may name the mailbox in any identity form
	// Exchange accepts (path form, alias, display name, legacyExchangeDN,
	// smtp:, GUID); the worker resolves it to the owner (UserResolver) before
	// the guards run and before acting.
	MailboxTarget bool
}

// HasGuard reports whether g applies to the action.
func (s Spec) HasGuard(g Guard) bool { return slices.Contains(s.Guards, g) }

// Least is the least-privileged permission of each clause.
func (s Spec) Least() []string {
	out := make([]string, 0, len(s.Permissions))
	for _, c := range s.Permissions {
		if len(c) > 0 {
			out = append(out, c[0])
		}
	}
	return out
}

// Permission is the least-privileged write permission (the first clause),
// named in a 403's error detail.
func (s Spec) Permission() string {
	if len(s.Permissions) == 0 || len(s.Permissions[0]) == 0 {
		return ""
	}
	return s.Permissions[0][0]
}

// ExchangePermission is what the Exchange Online admin API actions need: the
// Office 365 Exchange Online application permission Exchange.ManageAsApp and an
// Exchange administrator role assigned to the app's service principal.
const ExchangePermission = "Exchange.ManageAsApp"

// ExchangeRole is the Exchange role the admin API actions need.
const ExchangeRole = "Exchange Recipient Administrator (or Exchange Administrator)"

var (
	userRead     = Clause{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	enableUser   = Clause{"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
	riskyWrite   = Clause{"IdentityRiskyUser.ReadWrite.All"}
	mailboxRules = Clause{"MailboxSettings.ReadWrite"}
	caWrite      = Clause{"Policy.ReadWrite.ConditionalAccess"}
	caRead       = Clause{"Policy.Read.All"}
	exchangeApp  = Clause{ExchangePermission}
	// Defender for Endpoint application permissions
	// (https://learn.microsoft.com/defender-endpoint/api/isolate-machine,
	// …/get-machines, …/import-ti-indicators).
	machineIsolate = Clause{"Machine.Isolate"}
	machineRead    = Clause{"Machine.Read.All", "Machine.ReadWrite.All"}
	tiWrite        = Clause{"Ti.ReadWrite.All"}
	userGuards     = []Guard{GuardIdentity}

	recipientsArg    = Arg{Name: "recipients", Kind: ArgString, List: true, Doc: "The forwarding addresses the triggering event named (informational)."}
	indicatorExpires = Arg{Name: "expires", Kind: ArgDuration, Doc: "How long the indicator lasts: a duration such as 24h or 7d (default 7d, at most 90d)."}
)

// ruleArgs are the forwarding-rule actions' parameters (scope's default
// differs).
func ruleArgs(scope string) []Arg {
	return []Arg{
		{Name: "scope", Kind: ArgString, Enum: []string{"external", "all"}, Doc: "external: rules forwarding outside the verified domains; all: every forwarding rule (default " + scope + ")."},
		recipientsArg,
		{Name: "rule", Kind: ArgString, Doc: "The rule the triggering event named (informational)."},
	}
}

var catalogue = map[Name]Spec{
	DisableUser: {
		Name: DisableUser, CLI: "disable-user", Target: "user", Inverse: EnableUser,
		Description: "block sign-in: PATCH accountEnabled=false",
		API:         APIGraph, Permissions: []Clause{enableUser, userRead},
		Role:       "Privileged Authentication Administrator, only to disable a privileged administrator (Microsoft's rule for sensitive properties)",
		Why:        "PATCH `accountEnabled`; the read records the state before, for the audit trail",
		Calls:      "GET /users/{id}?$select=id,userPrincipalName,accountEnabled; PATCH /users/{id} (both in $batch)",
		RepeatSafe: true, BlastLimit: 25, Guards: userGuards,
	},
	EnableUser: {
		Name: EnableUser, CLI: "enable-user", Target: "user", Inverse: DisableUser,
		Description: "allow sign-in again: PATCH accountEnabled=true",
		API:         APIGraph, Permissions: []Clause{enableUser, userRead},
		Why:        "PATCH `accountEnabled`; the read records the state before",
		Calls:      "GET /users/{id}?$select=id,userPrincipalName,accountEnabled; PATCH /users/{id} (both in $batch)",
		RepeatSafe: true, Guards: userGuards,
	},
	RevokeSessions: {
		Name: RevokeSessions, CLI: "revoke-sessions", Target: "user",
		Irreversible: "revoked sessions cannot be restored; the user signs in again",
		Description:  "invalidate refresh tokens and session cookies: revokeSignInSessions",
		API:          APIGraph, Permissions: []Clause{{"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}},
		Why:   "`POST /users/{id}/revokeSignInSessions` (older docs: `User.ReadWrite.All`)",
		Calls: "POST /users/{id}/revokeSignInSessions (in $batch)",
		// A second revoke signs the user out again: probe before repeating.
		RepeatSafe: false, Guards: userGuards,
	},
	ResetPassword: {
		Name: ResetPassword, CLI: "reset-password", Target: "user",
		Irreversible: "the previous password is unknown and cannot be restored",
		Description:  "set a generated strong password and force a change at next sign-in",
		API:          APIGraph, Permissions: []Clause{{"User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}},
		Role:  "User Administrator (Privileged Authentication Administrator to reset a privileged administrator)",
		Why:   "app-only PATCH of `passwordProfile` (the `resetPassword` method is delegated-only)",
		Calls: "PATCH /users/{id} {passwordProfile}",
		// A repeat sets yet another password: repeated only after the
		// interrupted attempt, by design (the first password was never seen).
		RepeatSafe: true, BlastLimit: 25, Guards: userGuards,
	},
	ConfirmCompromised: {
		Name: ConfirmCompromised, CLI: "confirm-compromised", Target: "user",
		Irreversible: "Identity Protection has no 'unconfirm'; dismiss_risk clears the risk instead",
		Description:  "mark the user compromised in Identity Protection (risk high)",
		API:          APIGraph, Permissions: []Clause{riskyWrite, userRead},
		Why:        "`riskyUsers/confirmCompromised` takes object ids",
		Calls:      "GET /users/{id}?$select=id; GET /identityProtection/riskyUsers/{id}; POST /identityProtection/riskyUsers/confirmCompromised",
		RepeatSafe: true, BlastLimit: 50, Guards: userGuards,
	},
	DismissRisk: {
		Name: DismissRisk, CLI: "dismiss-risk", Target: "user",
		Irreversible: "dismissed risk cannot be restored; confirm_compromised raises it again",
		Description:  "dismiss the user's risk in Identity Protection",
		API:          APIGraph, Permissions: []Clause{riskyWrite, userRead},
		Why:        "`riskyUsers/dismiss` takes object ids",
		Calls:      "GET /users/{id}?$select=id; GET /identityProtection/riskyUsers/{id}; POST /identityProtection/riskyUsers/dismiss",
		RepeatSafe: true, BlastLimit: 50, Guards: userGuards,
	},
	DisableForwardRules: {
		Name: DisableForwardRules, MailboxTarget: true, CLI: "disable-forward-rules", Target: "user", Inverse: EnableForwardRules,
		Description: "disable every inbox rule that forwards, redirects or forwards as attachment, internal recipients included (scope all, the default), or only those forwarding outside the tenant (scope external)",
		API:         APIGraph, Permissions: []Clause{mailboxRules},
		Why:   "list and PATCH inbox `messageRules` (scope external also reads the verified domains: `Domain.Read.All`)",
		Calls: "GET /users/{id}/mailFolders/inbox/messageRules; PATCH …/messageRules/{rule} {isEnabled:false}",
		Args:  ruleArgs("all"), Parse: parseDisableRules,
		RepeatSafe: true, BlastLimit: 50, Guards: userGuards,
	},
	EnableForwardRules: {
		Name: EnableForwardRules, MailboxTarget: true, CLI: "enable-forward-rules", Target: "user", Inverse: DisableForwardRules,
		Description: "re-enable the inbox rules a disable_forward_rules disabled",
		API:         APIGraph, Permissions: []Clause{mailboxRules},
		Why:   "PATCH inbox `messageRules` back on",
		Calls: "GET /users/{id}/mailFolders/inbox/messageRules; PATCH …/messageRules/{rule} {isEnabled:true}",
		Args:  []Arg{{Name: "rule_ids", Kind: ArgID, List: true, Required: true, Doc: "The inbox rules to enable again (what undo sends)."}}, Parse: parseEnableRules,
		RepeatSafe: true, Guards: userGuards,
	},
	DeleteForwardRules: {
		Name: DeleteForwardRules, MailboxTarget: true, CLI: "delete-forward-rules", Target: "user", Inverse: RestoreForwardRules,
		Description: "delete the inbox rules that forward outside the tenant (scope external) or every forwarding rule (scope all), keeping each rule in the audit record",
		API:         APIGraph, Permissions: []Clause{mailboxRules, {"Domain.Read.All", "Directory.Read.All"}},
		Why:   "list and DELETE inbox `messageRules`; verified domains decide what is external",
		Calls: "GET /domains; GET /users/{id}/mailFolders/inbox/messageRules; DELETE …/messageRules/{rule}",
		Args:  ruleArgs("external"), Parse: parseDeleteRules,
		RepeatSafe: true, BlastLimit: 50, Guards: userGuards,
	},
	RestoreForwardRules: {
		Name: RestoreForwardRules, MailboxTarget: true, Target: "user", InverseOnly: true,
		Irreversible: "run delete_forward_rules to remove restored rules again",
		Description:  "recreate inbox rules exactly from the snapshots a delete_forward_rules kept",
		API:          APIGraph, Permissions: []Clause{mailboxRules},
		Why:   "re-create inbox `messageRules` from the snapshot",
		Calls: "GET /users/{id}/mailFolders/inbox/messageRules; POST …/messageRules",
		Args:  []Arg{{Name: "rules", Kind: ArgObject, List: true, Required: true, Max: MaxRestoreRules, Doc: "The rule snapshots a delete_forward_rules kept (what undo sends)."}}, Parse: parseRestoreRules,
		// The executor skips a rule that already exists with the same content.
		RepeatSafe: true, Guards: userGuards,
	},
	RemoveMailboxForwarding: {
		Name: RemoveMailboxForwarding, MailboxTarget: true, CLI: "remove-mailbox-forwarding", Target: "user", Inverse: RestoreMailboxForwarding,
		Description: "clear the mailbox's own forwarding (Set-Mailbox ForwardingSmtpAddress, ForwardingAddress, DeliverToMailboxAndForward), keeping the previous values in the audit record",
		API:         APIExchange, Permissions: []Clause{exchangeApp}, Role: ExchangeRole,
		Why:   "mailbox forwarding (`Set-Mailbox -ForwardingSmtpAddress`) is not in Graph: `Get-Mailbox` / `Set-Mailbox` through the Exchange Online admin API (`/adminapi/beta/{tenant}/InvokeCommand`)",
		Calls: "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-Mailbox; Set-Mailbox -ForwardingSmtpAddress $null -ForwardingAddress $null -DeliverToMailboxAndForward $false",
		Args:  []Arg{recipientsArg}, Parse: parseRecipients,
		RepeatSafe: true, Guards: userGuards,
	},
	RestoreMailboxForwarding: {
		Name: RestoreMailboxForwarding, MailboxTarget: true, Target: "user", InverseOnly: true,
		Irreversible: "run remove_mailbox_forwarding to remove restored forwarding again",
		Description:  "set the mailbox forwarding a remove_mailbox_forwarding removed back to its recorded values",
		API:          APIExchange, Permissions: []Clause{exchangeApp}, Role: ExchangeRole,
		Why:   "`Set-Mailbox` back to the recorded values",
		Calls: "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-Mailbox; Set-Mailbox -ForwardingSmtpAddress -ForwardingAddress -DeliverToMailboxAndForward",
		Args: []Arg{
			{Name: "forwarding_smtp_address", Kind: ArgString, Max: 330, Doc: "ForwardingSmtpAddress, with or without smtp:."},
			{Name: "forwarding_address", Kind: ArgString, Max: 256, Doc: "ForwardingAddress: a recipient of the organisation."},
			{Name: "deliver_to_mailbox_and_forward", Kind: ArgBool, Doc: "DeliverToMailboxAndForward."},
		}, Parse: parseRestoreForwarding,
		RepeatSafe: true, Guards: userGuards,
	},
	PurgeMail: {
		Name: PurgeMail, CLI: "purge-mail", Target: "message",
		Irreversible: "purged mail is not restored by Responder (soft: it stays in Deleted Items for the user or an admin to restore; hard: it cannot come back)",
		Description:  "find messages by internet message id, or by sender and/or subject in a received-time window, and delete them (soft: move to Deleted Items; hard: permanentDelete)",
		API:          APIGraph, Permissions: []Clause{{"Mail.ReadWrite"}, userRead},
		Why:   "find messages, `permanentDelete` or move to Deleted Items; the user read lists every mailbox",
		Calls: "GET /users?$select=id,userPrincipalName,mail (all mailboxes); GET /users/{id}/messages?$filter=…; POST /users/{id}/messages/{msg}/permanentDelete or …/move {destinationId:deleteditems}",
		Args: []Arg{
			{Name: "sender", Kind: ArgEmail, Doc: "The sender's address (with a received-time window)."},
			{Name: "subject", Kind: ArgString, Max: 255, Doc: "The exact subject (with a received-time window)."},
			{Name: "received_after", Kind: ArgTime, Doc: "Received at or after."},
			{Name: "received_before", Kind: ArgTime, Doc: "Received before."},
			{Name: "mailboxes", Kind: ArgString, List: true, Max: MaxPurgeMailboxes, Doc: "The mailboxes to search (UPN or object id); or all_mailboxes."},
			{Name: "all_mailboxes", Kind: ArgBool, Doc: "Search every mailbox of the tenant."},
			{Name: "hard", Kind: ArgBool, Doc: "permanentDelete instead of moving to Deleted Items: cannot be undone."},
		}, Parse: parsePurgeParams,
		// A repeat finds only what is left.
		RepeatSafe: true, BlastLimit: 10,
	},
	BlockIP: {
		Name: BlockIP, CLI: "block-ip", Target: "ip", Inverse: UnblockIP,
		Description: "add the range to Responder's IP named locations blocked by Responder's Conditional Access policy (both created on first use)",
		API:         APIGraph, Permissions: []Clause{caWrite, caRead, {"RoleManagement.Read.Directory", "Directory.Read.All"}, userRead},
		Why:   "IP named locations and one block policy owned by Responder; protected accounts and role members are excluded from the policy",
		Calls: "GET/POST/PATCH /identity/conditionalAccess/namedLocations; GET/POST/PATCH /identity/conditionalAccess/policies",
		Args:  []Arg{{Name: "expires", Kind: ArgDuration, Doc: "Unblock automatically after this long (default: until unblocked)."}}, Parse: parseIPParams,
		RepeatSafe: true, BlastLimit: 200, Guards: []Guard{GuardIP}, Expires: true,
	},
	UnblockIP: {
		Name: UnblockIP, CLI: "unblock-ip", Target: "ip", Inverse: BlockIP,
		Description: "remove the range from Responder's blocked IP named locations",
		API:         APIGraph, Permissions: []Clause{caWrite, caRead},
		Why:   "remove the range from Responder's named locations; a location left with no range is deleted (Entra requires one), and the policy with the last one",
		Calls: "GET/PATCH /identity/conditionalAccess/namedLocations",
		Parse: parseIPParams, RepeatSafe: true,
	},
	BlockSender: {
		Name: BlockSender, CLI: "block-sender", Target: "sender", Inverse: UnblockSender,
		Description: "block mail from an address or a whole domain in the Tenant Allow/Block List (New-TenantAllowBlockListItems -ListType Sender -Block), with an expiry (default 30 days, at most 90, or never)",
		API:         APIExchange, Permissions: []Clause{exchangeApp}, Role: TABLRole,
		Why:   "sender blocks live in the Tenant Allow/Block List, reachable only through Exchange cmdlets: `Get-`/`New-TenantAllowBlockListItems -ListType Sender` through the Exchange Online admin API",
		Calls: "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-TenantAllowBlockListItems -ListType Sender -Entry; New-TenantAllowBlockListItems -ListType Sender -Block -Entries -ExpirationDate|-NoExpiration -Notes",
		Args:  []Arg{{Name: "expires", Kind: ArgString, Max: 16, Doc: "How long the block lasts: a duration such as 24h or 7d, at most 90d (default 30d), or never."}}, Parse: parseBlockSender,
		// The executor reads the list first: an existing block is a no-op.
		RepeatSafe: true, BlastLimit: 50, Guards: []Guard{GuardDomain},
	},
	UnblockSender: {
		Name: UnblockSender, Target: "sender", InverseOnly: true, Inverse: BlockSender,
		Description: "remove the Tenant Allow/Block List entry a block_sender created (Remove-TenantAllowBlockListItems -ListType Sender -Ids)",
		API:         APIExchange, Permissions: []Clause{exchangeApp}, Role: TABLRole,
		Why:   "`Remove-TenantAllowBlockListItems -Ids` of the entry Responder created",
		Calls: "Exchange Online admin API: POST /adminapi/beta/{tenant}/InvokeCommand Get-TenantAllowBlockListItems -ListType Sender -Entry; Remove-TenantAllowBlockListItems -ListType Sender -Ids",
		Args:  []Arg{{Name: "entry_id", Kind: ArgID, Required: true, Doc: "The entry's Identity, as New-TenantAllowBlockListItems returned it."}}, Parse: parseUnblockSender,
		RepeatSafe: true,
	},
	IsolateDevice: {
		Name: IsolateDevice, CLI: "isolate-device", Target: "device", Inverse: ReleaseDevice,
		Description: "isolate the device from the network in Defender for Endpoint (full, or selective: Outlook, Teams and Skype keep working), waiting for the machine action to finish",
		API:         APIDefender, Permissions: []Clause{machineIsolate, machineRead},
		Why:   "`POST /api/machines/{id}/isolate`; the read resolves the device name and its tags and platform for the guards, and follows the machine action",
		Calls: "Defender API: GET /api/machines?$filter= (or /api/machines/{id}); GET /api/machineactions?$filter=machineId; POST /api/machines/{id}/isolate; GET /api/machineactions/{id} until final",
		Args:  []Arg{{Name: "selective", Kind: ArgBool, Doc: "Selective isolation: Outlook, Teams and Skype keep working."}}, Parse: parseIsolate,
		// The executor reads the device's machine actions first: an isolation
		// pending or in force is not requested again.
		RepeatSafe: true, BlastLimit: 10, Guards: []Guard{GuardDevice},
	},
	ReleaseDevice: {
		Name: ReleaseDevice, CLI: "release-device", Target: "device", Inverse: IsolateDevice,
		Description: "release the device from isolation in Defender for Endpoint, waiting for the machine action to finish",
		API:         APIDefender, Permissions: []Clause{machineIsolate, machineRead},
		Why:        "`POST /api/machines/{id}/unisolate`; the read resolves the device and follows the machine action",
		Calls:      "Defender API: GET /api/machines?$filter= (or /api/machines/{id}); GET /api/machineactions?$filter=machineId; POST /api/machines/{id}/unisolate; GET /api/machineactions/{id} until final",
		RepeatSafe: true,
	},
	BlockFile: {
		Name: BlockFile, CLI: "block-file", Target: "file", Inverse: RemoveIndicator,
		Description: "add a Defender for Endpoint file indicator (SHA-256 or SHA-1) with action BlockAndRemediate and an expiry (default 7 days)",
		API:         APIDefender, Permissions: []Clause{tiWrite},
		Why:   "`POST /api/indicators` (many at once: `POST /api/indicators/import`); title and description name the request and reason",
		Calls: "Defender API: GET /api/indicators?$filter=indicatorValue; POST /api/indicators or POST /api/indicators/import (up to 500 a call)",
		Args:  []Arg{indicatorExpires}, Parse: parseIndicator,
		RepeatSafe: true, BlastLimit: 200, Guards: []Guard{GuardIndicator}, Expires: true,
	},
	BlockURL: {
		Name: BlockURL, CLI: "block-url", Target: "url", Inverse: RemoveIndicator,
		Description: "add a Defender for Endpoint URL indicator with action Block and an expiry (default 7 days)",
		API:         APIDefender, Permissions: []Clause{tiWrite},
		Why:   "`POST /api/indicators` (many at once: `POST /api/indicators/import`); never the tenant's verified domains or Microsoft's",
		Calls: "Defender API: GET /api/indicators?$filter=indicatorValue; POST /api/indicators or POST /api/indicators/import (up to 500 a call)",
		Args:  []Arg{indicatorExpires}, Parse: parseIndicator,
		RepeatSafe: true, BlastLimit: 200, Guards: []Guard{GuardIndicator}, Expires: true,
	},
	BlockDomain: {
		Name: BlockDomain, CLI: "block-domain", Target: "domain", Inverse: RemoveIndicator,
		Description: "add a Defender for Endpoint domain indicator with action Block and an expiry (default 7 days)",
		API:         APIDefender, Permissions: []Clause{tiWrite},
		Why:   "`POST /api/indicators` (many at once: `POST /api/indicators/import`); never the tenant's verified domains or Microsoft's",
		Calls: "Defender API: GET /api/indicators?$filter=indicatorValue; POST /api/indicators or POST /api/indicators/import (up to 500 a call)",
		Args:  []Arg{indicatorExpires}, Parse: parseIndicator,
		RepeatSafe: true, BlastLimit: 200, Guards: []Guard{GuardIndicator}, Expires: true,
	},
	BlockDeviceIP: {
		Name: BlockDeviceIP, CLI: "block-device-ip", Target: "ip", Inverse: RemoveIndicator,
		Description: "add a Defender for Endpoint IP indicator (one address: the API takes no CIDR) with action Block and an expiry (default 7 days), blocking the address on devices",
		API:         APIDefender, Permissions: []Clause{tiWrite},
		Why:   "`POST /api/indicators` (many at once: `POST /api/indicators/import`); the IP guard applies as to block_ip",
		Calls: "Defender API: GET /api/indicators?$filter=indicatorValue; POST /api/indicators or POST /api/indicators/import (up to 500 a call)",
		Args:  []Arg{indicatorExpires}, Parse: parseIndicator,
		RepeatSafe: true, BlastLimit: 200, Guards: []Guard{GuardIP}, Expires: true,
	},
	RemoveIndicator: {
		Name: RemoveIndicator, Target: "indicator", InverseOnly: true,
		Irreversible: "run the block again to re-create the indicator",
		Description:  "delete the Defender for Endpoint indicator a block created (only that id, from the stored snapshot)",
		API:          APIDefender, Permissions: []Clause{tiWrite},
		Why:   "`DELETE /api/indicators/{id}` of the indicator Responder created, also at expiry",
		Calls: "Defender API: DELETE /api/indicators/{id}",
		Args:  []Arg{{Name: "indicator_id", Kind: ArgString, Pattern: indicatorIDRE, Required: true, Doc: "The id of the indicator the block created."}}, Parse: parseRemoveIndicator,
		RepeatSafe: true,
	},
	Undo: {
		Name: Undo, CLI: "undo", Target: "request", API: APINone,
		Irreversible: "an undo is itself undone by undoing the request it issued",
		Description:  "issue the inverse of a finished action as a new request that references it",
		Calls:        "none (publishes the inverse request)",
		RepeatSafe:   true, Meta: true,
	},
}

// Lookup returns the catalogue entry for n.
func Lookup(n Name) (Spec, bool) {
	s, ok := catalogue[n]
	return s, ok
}

// Names lists the catalogue, sorted.
func Names() []Name {
	out := make([]Name, 0, len(catalogue))
	for n := range catalogue {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Specs lists the catalogue entries, sorted by name.
func Specs() []Spec {
	out := make([]Spec, 0, len(catalogue))
	for _, n := range Names() {
		out = append(out, catalogue[n])
	}
	return out
}

// BlastDefaults describes the default per-action blast-radius limits, as
// `serve --help` prints them ("disable_user=25, ...").
func BlastDefaults() string {
	var parts []string
	for _, s := range Specs() {
		if s.BlastLimit > 0 {
			parts = append(parts, string(s.Name)+"="+strconv.Itoa(s.BlastLimit))
		}
	}
	return strings.Join(parts, ", ")
}
