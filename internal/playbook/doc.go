// Package playbook owns Responder's playbook language: the model, loading and
// strict validation of YAML playbooks, matching an event envelope against
// them, templating action targets and parameters from the event, and the
// per-playbook guards (suppression, blast radius) that the engine enforces.
//
// # Usage
//
//	set, err := playbook.LoadDir("playbooks", playbook.LoadOptions{VerifiedDomains: []string{"contoso.com"}})
//	// err is a *LoadError listing every problem as file:line: playbook "x": step N (action): message
//	matches, err := set.Match(&env) // pure: no I/O, no clock, no state
//	for _, m := range matches { /* m.Steps are actions.Step, in order; m.Approval[i]; m.SuppressionKey */ }
//
// MatchStateful adds threshold triggers, with a Counter (matcher.KVCounter in the
// engine). `responder playbook test` runs records through a Set with package
// playbooktest; `responder bench match` measures the matcher with package
// bench/matchbench, through Decode and HitsDecoded, which find the playbooks
// that fire on an event decoded ahead (RenderDecoded then builds their
// matches; MatchDecoded is both).
//
// # The language, by example
//
//	name: external-forwarding-rule       # lower-case, digits, dashes; unique in the set
//	description: An inbox rule forwards mail outside the tenant.
//	enabled: true                        # required: nothing goes live by accident
//	dry_run: false                       # true: every step only records what it would do
//	trigger:
//	  source: audit                      # audit | signin | risk_detection | risky_user | alert
//	  kind: [New-InboxRule, Set-InboxRule, UpdateInboxRules]   # optional, case-insensitive
//	  when:                              # all must hold
//	    - field: external_forward_recipients
//	      exists: true
//	    - field: raw.ResultStatus
//	      in: ["True", Succeeded, success]
//	    - any: raw.Parameters            # any / all over a list ...
//	      where:                         # ... each item is "." inside where
//	        - {field: Name, in: [ForwardTo, RedirectTo, ForwardAsAttachmentTo]}
//	    - not: {field: ip, cidr: [10.0.0.0/8]}
//	    - or:
//	        - {field: ip, in_ip_list: lists/blocked-ips.txt}
//	        - {field: raw.location.countryOrRegion, in: [KP, IR]}
//	    - expr: 'len(external_forward_recipients) > 0 && kind != "Set-Mailbox"'
//	reason: "{{ user }} forwards mail to {{ external_forward_recipients }}"   # optional
//	steps:
//	  - action: delete_forward_rules     # a catalogue action (actions.Lookup)
//	    target: {user: "{{ user || user_id }}"}   # default for user actions; {{ ip }} for ip actions
//	    params: {recipients: "{{ external_forward_recipients }}"}
//	    dry_run: true
//	    approval: required               # "" or required
//	suppression: {window: 1h, key: "{{ user || user_id }}"}   # same key + playbook fire once per window
//	                                     # scope: <name> shares the window between the playbooks naming it
//	blast_radius: {max: 5, window: 1h}   # past it, the engine holds requests for approval
//
// Fields (paths) are: the envelope's id, source, kind, time, tenant_id, user
// (for Exchange records, whoever acted), user_id, ip, mailbox (the mailbox an
// Exchange record is about, in the record's identity form; mailbox actions
// accept any such form, resolved through Get-Mailbox before acting) and
// rule_id (exact digits); for Defender XDR alerts (source alert, kind the
// alert's category), the first of what the evidence names: device (the
// Defender machine id), device_name, sha256, sha1, url, domain, sender,
// message_id (internet message id), network_message_id, and the alert's
// severity, category, service_source, detection_source and title;
// raw.<path> into the Microsoft record (keys exact, then
// case-insensitive; numeric segments index lists; raw["@odata.type"] quotes a
// key; a JSON-in-a-string value such as RuleActions or additionalInfo is
// decoded when a path goes into it, so raw.additionalInfo[Key=userAgent].Value
// reads Identity Protection's Key/Value pairs; a diagnostic-settings or audit-query
// wrapper is looked through); and the helpers forward_recipients and
// external_forward_recipients.
//
// Field operators, any number per condition (all must hold): equals, in,
// contains, starts_with, ends_with (a value or a list: any of), matches (RE2),
// cidr (prefixes or addresses), in_ip_list (files of addresses/CIDRs, one per
// line, # comments, read once at load relative to LoadOptions.BaseDir), gt,
// gte, lt, lte (numbers; numeric strings count), exists (present and not null,
// "" or empty). String comparison ignores case unless case_sensitive: true
// (matches gets (?i)). Numbers compare as numbers ("0" equals 0.0). When a
// field is a list, an operator holds if it holds for any item; for explicit
// quantification use any/all with where. all over an absent or empty list is
// false. Combinators: not (one condition or a list), and, or. Absent fields
// make every operator false except exists: false.
//
// expr conditions use github.com/expr-lang/expr, compiled once at load against
// the declared variables (unknown names are load errors), returning bool. It
// was chosen over google/cel-go because it has no dependencies (cel-go brings
// protobuf, antlr and genproto into a package that must stay light), its
// syntax reads like the conditions around it, and it has the bounds we need:
// no loops or recursion, a node limit at compile time (2000) and a memory
// budget per evaluation (200000), with the clock (now) and repeat disabled so
// evaluation stays pure and bounded. A function in_cidr(ip, cidr) is provided.
//
// Templates: "{{ a || b || 'literal' }}" resolves to the first non-empty
// alternative; alternatives are the same paths as conditions. A value that is
// exactly one placeholder keeps its type (a list stays a list); otherwise the
// result is a string, lists joined by ";". Templates are parsed at load: bad
// syntax and unknown fields are errors.
//
// Forwarding helpers: forward_recipients are the addresses an Exchange record
// sends mail to (ForwardTo, ForwardAsAttachmentTo, RedirectTo of New- and
// Set-InboxRule; ForwardingSmtpAddress and ForwardingAddress of Set-Mailbox;
// Forward and Redirect actions in UpdateInboxRules' RuleActions), smtp:
// prefixes and "[SMTP:…]" stripped, ";" lists split, lower-cased.
// external_forward_recipients are those whose domain is neither a verified
// domain (LoadOptions.VerifiedDomains) nor the domain of the record's user.
//
// # Actions
//
// Step actions are checked with actions.Lookup: every playbook, enabled or
// not, names catalogue actions only. A step's target keys are user, ip,
// message_id, sender, device, file, url and domain; left out, the action's
// own kind defaults to {{ user || user_id }}, {{ ip }}, {{ sender }},
// {{ device }}, {{ sha256 || sha1 }}, {{ url }} or {{ domain }}. A step's target is validated when the
// event resolves it (a UPN or object id, an address or CIDR); a playbook
// whose target cannot be resolved does not fire and Match reports why.
//
// # Sigma rules as triggers
//
//	trigger:
//	  sigma: rules/microsoft365_susp_inbox_rule_creation_or_update_activity.yml  # or a directory, or a list
//	  when: [...]            # optional: further conditions, all must hold too
//
// Paths are relative to LoadOptions.BaseDir (the playbook directory). A
// directory loads every *.yml in it; the playbook fires when any rule
// matches (Match.Sigma names it; the reason carries title, id and author, as
// the rules' licence, DRL 1.1, asks). trigger.source may be left out: the
// rule's logsource gives it. Every rule must load, else the playbook is a
// load problem naming the rule file, line and the unsupported feature.
// LoadSigmaFile, LoadSigmaDir and ParseSigma load rules on their own.
//
// Supported: selections as mappings (all fields hold) and lists of mappings
// (any holds); a list of values is any (with |all, every); null (absent or
// null); an empty quoted value (the empty string); plain values case-insensitive with * and ?
// wildcards (\*, \?, \\ escape); numbers equal numerically; modifiers
// contains, startswith, endswith, all, re (Go RE2; i, m, s flags), cidr,
// exists, cased, gt, gte, lt, lte; a compound field value (Parameters, a list
// of {Name, Value}) matches when any scalar leaf does (Sigma's "greedy"
// search); condition with and, or, not, parentheses, 1 of / any of / all of
// <pattern> or them (them leaves out identifiers starting with _), and a
// list of conditions (any). Refused, by exact name in SigmaError.Feature:
// "aggregation | count()" (any "| …"), "near", "timeframe", "correlation
// rule", "rule collection …", "keyword search" (value lists without a
// field), "modifier X" for every other modifier (base64, base64offset,
// windash, utf16le, expand, fieldref… — no shared rule uses them), "N of"
// for N other than 1, "field X" when the logsource's table has no mapping
// for X, and "logsource product=… service=… category=…" for logsources
// without a table.
//
// Field mapping, per logsource (lookups ignore case):
//
//	m365/audit               Management Activity records; a PascalCase field is the raw field of that name
//	m365/threat_management,  eventSource -> Workload; eventName -> Name, AlertDisplayName;
//	m365/threat_detection    status -> ResultStatus as success/failure (Succeeded, Success, True -> success)
//	azure/auditlogs          (audit records with Workload AzureActiveDirectory only)
//	                         operationName, properties.message, ActivityDisplayName -> Operation without its
//	                         trailing "."; properties.targetResources, TargetResources -> Target and
//	                         ModifiedProperties; ConsentContext.*, ConsentAction.*, Role.*, TargetId.* ->
//	                         ModifiedProperties[Name=<field>].NewValue; Result -> ResultStatus as above;
//	                         InitiatedBy -> UserId, Actor
//	azure/signinlogs         Graph signIn: ResultType -> status.errorCode; ResultDescription ->
//	                         status.failureReason, status.additionalDetails; Status -> "Success" (errorCode 0)
//	                         or "Failure", failureReason, additionalDetails; DeviceDetail.*, LocationDetails.*,
//	                         Status.* -> deviceDetail.*, location.*, status.*; Location -> location.countryOrRegion;
//	                         AuthenticationRequirement, RiskState, RiskLevelDuringSignIn, RiskLevelAggregated,
//	                         RiskDetail, RiskEventTypes, RiskEventTypes_V2, UserAgent, UserPrincipalName, UserId,
//	                         AppDisplayName, AppId, IPAddress, ClientAppUsed, ConditionalAccessStatus,
//	                         ResourceDisplayName, IsInteractive, AuthenticationDetails, HomeTenantId,
//	                         ResourceTenantId -> the Graph property of that name
//	azure/riskdetection      Graph riskDetection: its own property names (riskEventType stays), location.*
//
// # Stateful triggers
//
//	trigger:
//	  source: signin
//	  kind: failure
//	  when: [{field: raw.status.errorCode, equals: 500121}]
//	  threshold:
//	    count: 10              # 1..1000
//	    by: user               # a field or a list of fields: the key (lower-cased)
//	    distinct: ip           # optional: count distinct values of this field instead of events
//	    window: 10m
//	    then: {kind: success}  # optional follow-up event: source (default the trigger's), kind, when
//
// Events that meet the trigger (source, kind, when, sigma) are counted per
// key. The window slides in event time (not the clock): for counting it ends
// at the newest event seen for the key, and an entry counts when it is
// newer than that minus the window, so events arriving a little out of
// order (several feeds, several engine processes) count the same. Without
// then, the event that brings the count to count fires the playbook (with
// its own targets) and the key's state resets: the next firing needs count
// new events. With then, counting only arms; a follow-up event for the same
// key at time t fires when at least count events lie in (t-window, t], and
// the state resets. An event that meets both the trigger and then is
// counted first. An event with no value for a by field (or distinct) is not
// counted. The same event id is never counted twice; the event that fired,
// seen again (a redelivery), fires again so the engine can re-request the
// same actions (their request ids deduplicate). The state keeps at most
// count entries per key (the newest).
//
// Match stays pure and never fires a threshold playbook. MatchStateful(ctx,
// env, counter) does: it observes each event that meets a threshold
// playbook's trigger or then through Counter (one method, Observe), whose
// state transition is ThresholdState.Apply. matcher.KVCounter implements it over a
// JetStream KV bucket with compare-and-set (Create when absent, Update at
// the read revision, retry on conflict), so state survives restarts and
// several engine processes count together; MemCounter serves `playbook test`
// and tests. `playbook test` evaluates thresholds over the run's records in
// time order through a reorder buffer of 4096 records.
//
// # Matching speed
//
// The set is indexed by source, then by a value each trigger requires: the
// kind when trigger.kind is given, else a field a Sigma rule requires to
// equal one of a few values (riskEventType, Operation, an alert name), or
// integers (sign-in ResultType), filed by number; an event meets only the
// triggers filed under its values plus those that require none. The raw
// record is decoded lazily: scanned once for its top-level members, and a
// member decoded only when a condition reads it. Each Set compiles the Sigma
// rules it runs into one program (prog.go): every field a rule reads has an
// id and a slot in the per-event memo, which holds its leaves with their
// lower-cased text and numbers, so that rules reading one field share the
// work; Decode fills the slots of the fields of the event's source ahead of
// MatchDecoded. The rule's parsed tree, evaluated directly, is the reference
// that the differential tests and FuzzSigma hold the program to
// (reference_test.go). A rule that no value selects but that needs
// a field to contain one of a few words is filed under those words (the
// contains index), and runs only on events whose field contains one. Matching records hits
// first, each after its steps' targets are checked, and builds the matches
// from them (match.go). `responder bench match` measures it.
//
// # Guarantees
//
// Loading reports every problem (unknown fields, unknown actions, bad
// templates, regexps, CIDRs, expressions, IP list lines, duplicate names) with
// file, line, playbook and step; YAML anchors, aliases and custom tags are
// refused. A loaded Set is immutable and safe for concurrent use. Match never
// panics on any input and does no I/O. The package
// never imports the Graph SDK (TestDeps enforces it).
package playbook
