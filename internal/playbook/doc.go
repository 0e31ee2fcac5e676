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
// TestRecords is the library behind `responder playbook test`: it streams
// records as Microsoft publishes them, recognises each with event.Normalize
// and prints what would fire, touching nothing.
//
// # The language, by example
//
//	name: external-forwarding-rule       # lower-case, digits, dashes; unique in the set
//	description: An inbox rule forwards mail outside the tenant.
//	enabled: true                        # required: nothing goes live by accident
//	dry_run: false                       # true: every step only records what it would do
//	trigger:
//	  source: audit                      # audit | signin | risk_detection | risky_user
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
//	  - action: delete_forward_rules     # a catalogue action (actions.Lookup) or a planned one
//	    target: {user: "{{ user || user_id }}"}   # default for user actions; {{ ip }} for ip actions
//	    params: {recipients: "{{ external_forward_recipients }}"}
//	    dry_run: true
//	    approval: required               # "" or required
//	suppression: {window: 1h, key: "{{ user || user_id }}"}   # same key + playbook fire once per window
//	blast_radius: {max: 5, window: 1h}   # past it, the engine holds requests for approval
//
// Fields (paths) are: the envelope's id, source, kind, time, tenant_id, user,
// user_id and ip; raw.<path> into the Microsoft record (keys exact, then
// case-insensitive; numeric segments index lists; raw["@odata.type"] quotes a
// key; a JSON-in-a-string value such as RuleActions or additionalInfo is
// decoded when a path goes into it; a diagnostic-settings or audit-query
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
// Step actions are checked with actions.Lookup. PlannedActions lists the
// actions the shipped playbooks need before the catalogue has them
// (delete_forward_rules, remove_mailbox_forwarding, block_ip, reset_password,
// confirm_compromised): only a disabled playbook may name one. A step's
// target is validated when the event resolves it (a UPN or object id, an
// address or CIDR); a playbook whose target cannot be resolved does not fire
// and Match reports why.
//
// # Later: stateful and Sigma triggers
//
// trigger.threshold (count or distinct count per key in a window, follow-up
// events) and trigger.sigma (a SigmaHQ rule with a field mapping) are reserved
// names: the loader rejects them with "not supported yet". They fit the model
// as further Trigger fields evaluated after the stateless conditions; the state
// lives in the engine (KV), and Match stays pure by receiving the counts.
//
// # Guarantees
//
// Loading reports every problem (unknown fields, unknown actions, bad
// templates, regexps, CIDRs, expressions, IP list lines, duplicate names) with
// file, line, playbook and step; YAML anchors, aliases and custom tags are
// refused. A loaded Set is immutable and safe for concurrent use. Match and
// TestRecords never panic on any input, and Match does no I/O. The package
// never imports the Graph SDK (TestDeps enforces it).
package playbook
