package analyst

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// Role says what a key may speak for.
type Role string

const (
	// RoleAnalyst signs its own requests (requested_by.kind analyst).
	RoleAnalyst Role = "analyst"
	// RoleEngine signs playbook and engine requests and may relay requests made
	// on someone else's behalf (follow-up steps, approved requests).
	RoleEngine Role = "engine"
	// RoleReviewer reads the audit trail through the engine's query service
	// and does nothing else: no action, no approval.
	RoleReviewer Role = "reviewer"
	// RoleConsole is the web console's key: it signs requests, approval
	// commands and audit queries on behalf of a person signed in with Entra
	// ID, whose rights (people and groups in the analysts file) are what the
	// engine checks. Alone it may do nothing.
	RoleConsole Role = "console"
)

// AllActions in an analyst's action list allows every action.
const AllActions = "*"

// Analyst is one key holder as the analysts file describes it.
type Analyst struct {
	Name      string
	PublicKey string
	Role      Role
	// Actions the analyst may request (action message names); AllActions for all.
	Actions []string
	// MayApprove: the analyst may approve or deny other people's requests.
	MayApprove bool
	// A person signed in to the console (see Directory.Person): their Entra
	// object id, UPN, the ID token's identifier and the groups that granted
	// the role; PublicKey is then the console's key.
	EntraOID, UPN, TokenID string
	Groups                 []string
}

// Allowed reports whether a may request action.
func (a Analyst) Allowed(action string) bool {
	if a.Role == RoleEngine {
		return true
	}
	if a.Role == RoleConsole || a.Role == RoleReviewer {
		return false
	}
	return slices.Contains(a.Actions, AllActions) || slices.Contains(a.Actions, action)
}

// MayReview reports whether a may read the audit trail through the engine:
// reviewers and analysts (an analyst follows their own requests there).
// The console key may: it queries for people signed in, each of whom the
// analysts file lists (every person there may read the trail).
func (a Analyst) MayReview() bool {
	return a.Role == RoleReviewer || a.Role == RoleAnalyst || a.Role == RoleConsole
}

// BusIdentity is what a may do on the bus (bus.Permissions).
func (a Analyst) BusIdentity() bus.Identity {
	return bus.Identity{PublicKey: a.PublicKey, Engine: a.Role == RoleEngine, Analyst: a.Role == RoleAnalyst || a.Role == RoleConsole, Reviewer: a.MayReview()}
}

// Actor is how a appears in audit records.
func (a Analyst) Actor() audit.Actor {
	kind := "analyst"
	switch a.Role {
	case RoleEngine:
		kind = "engine"
	case RoleReviewer:
		kind = "reviewer"
	}
	return audit.Actor{Kind: kind, Name: a.Name, KeyID: a.PublicKey, EntraOID: a.EntraOID, UPN: a.UPN, TokenID: a.TokenID, Groups: strings.Join(a.Groups, " ")}
}

// Directory maps public keys to analysts. It is immutable once built; load a new
// one to change it (the Verifier takes a func returning the current one).
type Directory struct {
	byKey map[string]Analyst
	// people and groups of the console (people.go), by lower-case object id.
	people map[string]Person
	groups map[string]Person
}

// FileVersion is the version of the analysts file format.
const FileVersion = 1

// file is the YAML shape of the analysts file:
//
//	version: 1
//	analysts:
//	  - name: alice
//	    public_key: UAB…
//	    actions: [disable_user, revoke_sessions]   # or ["*"]
//	    may_approve: true
//	engines:
//	  - name: engine-1
//	    public_key: UCD…
//	reviewers:                                     # read the audit trail, nothing else
//	  - name: carol
//	    public_key: UEF…
type file struct {
	Version   int         `yaml:"version"`
	Analysts  []fileEntry `yaml:"analysts"`
	Engines   []fileEntry `yaml:"engines"`
	Reviewers []fileEntry `yaml:"reviewers"`
	// The web console: its keys, and the Entra ID people and groups who may
	// sign in to it (people.go).
	Consoles []fileEntry   `yaml:"consoles"`
	People   []personEntry `yaml:"people"`
	Groups   []personEntry `yaml:"groups"`
}

type fileEntry struct {
	Name       string   `yaml:"name"`
	PublicKey  string   `yaml:"public_key"`
	Actions    []string `yaml:"actions"`
	MayApprove bool     `yaml:"may_approve"`
}

// LoadFile reads and validates an analysts file.
func LoadFile(path string) (*Directory, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("analysts file: %w", err)
	}
	d, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("analysts file %s: %w", path, err)
	}
	return d, nil
}

// Parse decodes an analysts file strictly: unknown fields, a missing or other
// version, empty names, invalid or repeated keys, repeated names, unknown
// actions and engine entries with actions or approval rights are errors that
// name the entry.
func Parse(data []byte) (*Directory, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file")
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if f.Version != FileVersion {
		return nil, fmt.Errorf("version: got %d, want %d", f.Version, FileVersion)
	}
	var all []Analyst
	for i, e := range f.Analysts {
		a, err := e.analyst(RoleAnalyst)
		if err != nil {
			return nil, fmt.Errorf("analysts[%d] (%s): %w", i, e.Name, err)
		}
		all = append(all, a)
	}
	for i, e := range f.Engines {
		if len(e.Actions) > 0 || e.MayApprove {
			return nil, fmt.Errorf("engines[%d] (%s): an engine key has no actions or may_approve", i, e.Name)
		}
		a, err := e.analyst(RoleEngine)
		if err != nil {
			return nil, fmt.Errorf("engines[%d] (%s): %w", i, e.Name, err)
		}
		all = append(all, a)
	}
	for i, e := range f.Reviewers {
		if len(e.Actions) > 0 || e.MayApprove {
			return nil, fmt.Errorf("reviewers[%d] (%s): a reviewer has no actions or may_approve", i, e.Name)
		}
		a, err := e.analyst(RoleReviewer)
		if err != nil {
			return nil, fmt.Errorf("reviewers[%d] (%s): %w", i, e.Name, err)
		}
		all = append(all, a)
	}
	for i, e := range f.Consoles {
		if len(e.Actions) > 0 || e.MayApprove {
			return nil, fmt.Errorf("consoles[%d] (%s): a console key has no actions or may_approve (the people signed in have them)", i, e.Name)
		}
		a, err := e.analyst(RoleConsole)
		if err != nil {
			return nil, fmt.Errorf("consoles[%d] (%s): %w", i, e.Name, err)
		}
		all = append(all, a)
	}
	d, err := NewDirectory(all...)
	if err != nil {
		return nil, err
	}
	if err := d.addPeople(f.People, f.Groups); err != nil {
		return nil, err
	}
	return d, nil
}

func (e fileEntry) analyst(role Role) (Analyst, error) {
	name := strings.TrimSpace(e.Name)
	if name == "" || name != e.Name {
		return Analyst{}, errors.New("name: empty or surrounded by spaces")
	}
	if !nkeys.IsValidPublicUserKey(e.PublicKey) {
		// Never echo the value: it could be a seed pasted by mistake.
		if strings.HasPrefix(e.PublicKey, "S") {
			return Analyst{}, errors.New("public_key: this looks like a private seed (S…); put the public key (U…) here and keep the seed secret")
		}
		return Analyst{}, errors.New("public_key: not a public user nkey (U…, 56 characters; see `responder keys new`)")
	}
	if role == RoleAnalyst && len(e.Actions) == 0 {
		return Analyst{}, errors.New("actions: empty (list action names, or \"*\" for all)")
	}
	for _, act := range e.Actions {
		if act == AllActions {
			continue
		}
		if _, ok := actions.Lookup(actions.Name(act)); !ok {
			return Analyst{}, fmt.Errorf("actions: unknown action %q", act)
		}
	}
	return Analyst{Name: name, PublicKey: e.PublicKey, Role: role, Actions: slices.Clone(e.Actions), MayApprove: e.MayApprove}, nil
}

// NewDirectory builds a Directory from entries; names (case-insensitively) and
// keys must be unique.
func NewDirectory(entries ...Analyst) (*Directory, error) {
	d := &Directory{byKey: map[string]Analyst{}}
	names := map[string]bool{}
	for _, a := range entries {
		if _, dup := d.byKey[a.PublicKey]; dup {
			return nil, fmt.Errorf("%s: public key %s is listed twice", a.Name, short(a.PublicKey))
		}
		n := strings.ToLower(a.Name)
		if names[n] {
			return nil, fmt.Errorf("%s: name is listed twice", a.Name)
		}
		if a.Role == "" {
			a.Role = RoleAnalyst
		}
		names[n] = true
		d.byKey[a.PublicKey] = a
	}
	return d, nil
}

func (d *Directory) names() map[string]bool {
	out := map[string]bool{}
	for _, a := range d.byKey {
		out[strings.ToLower(a.Name)] = true
	}
	return out
}

// BusIdentities are the bus rights of every key in d (bus.Permissions).
func (d *Directory) BusIdentities() []bus.Identity {
	var out []bus.Identity
	for _, a := range d.All() {
		out = append(out, a.BusIdentity())
	}
	return out
}

// Lookup returns the analyst holding the public key.
func (d *Directory) Lookup(publicKey string) (Analyst, bool) {
	if d == nil {
		return Analyst{}, false
	}
	a, ok := d.byKey[publicKey]
	return a, ok
}

// All lists the entries sorted by name.
func (d *Directory) All() []Analyst {
	if d == nil {
		return nil
	}
	out := make([]Analyst, 0, len(d.byKey))
	for _, a := range d.byKey {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Analyst) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// FileEntry returns the YAML snippet of an analysts-file entry for a new key,
// as `responder keys new` prints it.
func FileEntry(name, publicKey string) string {
	return fmt.Sprintf("  - name: %s\n    public_key: %s\n    actions: [\"*\"]\n    may_approve: false\n", name, publicKey)
}

// With returns a new Directory holding d's entries and more (the engine's own
// key added to a configured analysts file, say).
func (d *Directory) With(more ...Analyst) (*Directory, error) {
	n, err := NewDirectory(append(d.All(), more...)...)
	if err != nil {
		return nil, err
	}
	n.people, n.groups = d.people, d.groups
	for _, p := range n.people {
		if n.names()[strings.ToLower(p.Name)] {
			return nil, fmt.Errorf("%s: name is listed twice", p.Name)
		}
	}
	return n, nil
}
