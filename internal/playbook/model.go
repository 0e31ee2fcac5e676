package playbook

import (
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/event"
)

// Playbook is one compiled playbook. It is immutable once loaded.
type Playbook struct {
	Name        string
	Description string
	Enabled     bool
	// DryRun makes every step of the playbook a dry run.
	DryRun bool
	// File and Line locate the playbook's definition.
	File string
	Line int

	Trigger Trigger
	Steps   []Step

	// Suppression: the same key (by default the user) and playbook fire once
	// per window. Zero Window means no suppression. The engine enforces it with
	// Match.SuppressionKey; Match itself keeps no state.
	Suppression Suppression
	// BlastRadius: at most Max matches per Window for this playbook; past it the
	// engine holds requests for approval. Zero Max means no limit.
	BlastRadius BlastRadius

	reason *template // optional templated reason
}

// Trigger says which events a playbook looks at.
type Trigger struct {
	Source event.Source
	// Kinds, compared case-insensitively; empty means any kind.
	Kinds []string
	// Conditions all hold for the playbook to fire.
	Conditions []Condition
	// Sigma are the SigmaHQ rules of trigger.sigma (one file, or every rule of
	// a directory): the trigger holds when the conditions hold and any rule
	// matches. Source is then the rules' source (empty when they differ).
	Sigma []*SigmaRule
	// Threshold makes the trigger stateful: see Threshold. Set.Match never
	// fires such a playbook; Set.MatchStateful does, with a Counter.
	Threshold *Threshold
}

// Threshold is a count, or a count of distinct values, of the events that meet
// the trigger, per key, within a sliding window; with Then, a follow-up event
// for the same key fires once the count has been reached. See doc.go.
type Threshold struct {
	Count int
	// Distinct is the field whose distinct values are counted ("" counts events).
	Distinct string
	// By are the fields whose values make the key.
	By     []string
	Window time.Duration
	Then   *FollowUp

	distinct *ref
	by       []ref
}

// FollowUp is the event that fires an armed threshold.
type FollowUp struct {
	Source     event.Source
	Kinds      []string
	Conditions []Condition
}

// Condition is one compiled condition; String is its source form, used in
// match reasons.
type Condition interface {
	String() string
	eval(c *evalCtx, elem any) (bool, error)
}

// Step is one action of a playbook.
type Step struct {
	Action   actions.Name
	DryRun   bool   // this step only records what it would do
	Approval string // "" or ApprovalRequired
	Line     int

	targetKind string // user | ip | message
	target     targetTemplates
	params     map[string]any // values are *template, or literals / nested maps and lists
}

// ApprovalRequired is the only non-empty value of Step.Approval.
const ApprovalRequired = "required"

type targetTemplates struct {
	user, ip, messageID *template
	// The Defender and mail-filtering targets (target.sender, device, file,
	// url, domain), by key.
	more map[string]*template
}

// moreTargets are the target keys besides user, ip and message_id, each the
// catalogue target kind of the actions that take it.
var moreTargets = []string{"sender", "device", "file", "url", "domain"}

// Suppression is a per-playbook de-duplication window.
type Suppression struct {
	Window time.Duration
	// Key is the template source of the key ("{{ user || user_id }}" unless set).
	Key string
	// Scope, when set, is shared by every playbook that names it: the key is
	// then "<scope>/<resolved key>" instead of "<playbook>/<resolved key>", so
	// that one incident reported by two feeds (a sign-in and an Identity
	// Protection detection) is acted on once, whichever arrives first.
	Scope string
	key   *template
}

// BlastRadius caps how often a playbook acts.
type BlastRadius struct {
	Max    int
	Window time.Duration
}

// Match is one playbook that fired on one event.
type Match struct {
	Playbook string
	Steps    []actions.Step
	// Reason says why the playbook fired (the conditions that held, or the
	// playbook's own templated reason).
	Reason string
	// Approval[i] is Steps[i]'s approval mode: "" or ApprovalRequired.
	Approval []string
	// SuppressionKey is "<playbook>/<resolved key>" when the playbook has a
	// suppression window, "" otherwise.
	SuppressionKey string
	Suppression    time.Duration
	BlastRadius    BlastRadius
	// Sigma is the rule that matched, for a trigger.sigma playbook. Its title,
	// author and id go with any display of the match (the rules' licence,
	// DRL 1.1, asks for attribution).
	Sigma *SigmaRule
	// Threshold is set when a stateful trigger fired: the key and the count.
	Threshold *ThresholdFire
}

// ThresholdFire says which key crossed a threshold.
type ThresholdFire struct {
	Key   string // the by values, joined with "/"
	Count int    // the count or distinct count reached
}
