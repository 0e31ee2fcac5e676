package analyst

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
)

// Person is an Entra ID identity (a user, by object id) or a group (by its
// object id) that the analysts file lets sign in to the web console, with its
// role: analyst (Actions), approver (MayApprove), and reviewer (everyone
// listed may read the audit trail; a person with neither actions nor
// may_approve is only a reviewer).
//
//	people:
//	  - name: ada                                    # how the audit trail names them
//	    entra_object_id: 6f1c…                       # the user's object id (oid claim)
//	    actions: [disable_user, revoke_sessions]     # or ["*"]; [] for none
//	    may_approve: true
//	groups:                                          # optional: members of a group
//	  - name: soc-tier1
//	    entra_group_id: 0a9b…                        # the group's object id (groups claim)
//	    actions: [revoke_sessions]
//	consoles:                                        # the console's key (keys/console.nk)
//	  - name: console
//	    public_key: UAB…
type Person struct {
	Name       string
	EntraOID   string // a user's object id, or…
	GroupID    string // …a group's
	Actions    []string
	MayApprove bool
}

type personEntry struct {
	Name       string   `yaml:"name"`
	EntraOID   string   `yaml:"entra_object_id"`
	GroupID    string   `yaml:"entra_group_id"`
	Actions    []string `yaml:"actions"`
	MayApprove bool     `yaml:"may_approve"`
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidObjectID reports whether s is an Entra object id (a GUID).
func ValidObjectID(s string) bool { return guidRE.MatchString(s) }

func (e personEntry) person(group bool) (Person, error) {
	name := strings.TrimSpace(e.Name)
	if name == "" || name != e.Name {
		return Person{}, errors.New("name: empty or surrounded by spaces")
	}
	id := e.EntraOID
	switch {
	case group && e.EntraOID != "":
		return Person{}, errors.New("a group entry has entra_group_id, not entra_object_id")
	case !group && e.GroupID != "":
		return Person{}, errors.New("a person entry has entra_object_id, not entra_group_id (list groups under groups:)")
	case group:
		id = e.GroupID
	}
	if !ValidObjectID(id) {
		return Person{}, errors.New("entra_object_id / entra_group_id: not an object id (a GUID, as the Entra admin center shows it)")
	}
	for _, act := range e.Actions {
		if act == AllActions {
			continue
		}
		if _, ok := actions.Lookup(actions.Name(act)); !ok {
			return Person{}, fmt.Errorf("actions: unknown action %q", act)
		}
	}
	p := Person{Name: name, Actions: slices.Clone(e.Actions), MayApprove: e.MayApprove}
	if group {
		p.GroupID = strings.ToLower(id)
	} else {
		p.EntraOID = strings.ToLower(id)
	}
	return p, nil
}

// addPeople adds the console's people and groups; names are unique across the
// whole file, object ids within their list.
func (d *Directory) addPeople(people, groups []personEntry) error {
	names := d.names()
	d.people, d.groups = map[string]Person{}, map[string]Person{}
	add := func(list string, i int, e personEntry, group bool, into map[string]Person) error {
		p, err := e.person(group)
		if err != nil {
			return fmt.Errorf("%s[%d] (%s): %w", list, i, e.Name, err)
		}
		id := p.EntraOID + p.GroupID
		if _, dup := into[id]; dup {
			return fmt.Errorf("%s[%d] (%s): object id %s is listed twice", list, i, e.Name, id)
		}
		if names[strings.ToLower(p.Name)] {
			return fmt.Errorf("%s[%d] (%s): name is listed twice", list, i, e.Name)
		}
		names[strings.ToLower(p.Name)] = true
		into[id] = p
		return nil
	}
	for i, e := range people {
		if err := add("people", i, e, false, d.people); err != nil {
			return err
		}
	}
	for i, e := range groups {
		if err := add("groups", i, e, true, d.groups); err != nil {
			return err
		}
	}
	return nil
}

// WithPeople returns a copy of d with the console's people and groups
// replaced (tests and the demo build directories this way).
func (d *Directory) WithPeople(people ...Person) (*Directory, error) {
	n, err := NewDirectory(d.All()...)
	if err != nil {
		return nil, err
	}
	var ps, gs []personEntry
	for _, p := range people {
		e := personEntry{Name: p.Name, EntraOID: p.EntraOID, GroupID: p.GroupID, Actions: p.Actions, MayApprove: p.MayApprove}
		if p.GroupID != "" {
			gs = append(gs, e)
		} else {
			ps = append(ps, e)
		}
	}
	if err := n.addPeople(ps, gs); err != nil {
		return nil, err
	}
	return n, nil
}

// People lists the console's people and groups.
func (d *Directory) People() []Person {
	if d == nil {
		return nil
	}
	var out []Person
	for _, p := range d.people {
		out = append(out, p)
	}
	for _, p := range d.groups {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Person) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Person resolves a signed-in Entra identity: the people entry of oid, else
// the union of the rights of the listed groups among groups (the token's
// groups claim), named by the UPN. ok is false when neither lists them. The
// result is an Analyst holding the person's rights with PublicKey empty; the
// console's key is filled in by OnBehalf.
func (d *Directory) Person(oid, upn string, groups []string) (Analyst, bool) {
	if d == nil || oid == "" {
		return Analyst{}, false
	}
	oid = strings.ToLower(oid)
	if p, ok := d.people[oid]; ok {
		return p.analyst(oid, upn, nil), true
	}
	var hit []Person
	for _, g := range groups {
		if p, ok := d.groups[strings.ToLower(g)]; ok {
			hit = append(hit, p)
		}
	}
	if len(hit) == 0 || upn == "" {
		return Analyst{}, false
	}
	u := Person{Name: strings.ToLower(upn)}
	var via []string
	for _, p := range hit {
		via = append(via, p.GroupID)
		u.MayApprove = u.MayApprove || p.MayApprove
		for _, a := range p.Actions {
			if !slices.Contains(u.Actions, a) {
				u.Actions = append(u.Actions, a)
			}
		}
	}
	slices.Sort(via)
	return u.analyst(oid, upn, via), true
}

func (p Person) analyst(oid, upn string, via []string) Analyst {
	role := RoleAnalyst
	if len(p.Actions) == 0 && !p.MayApprove {
		role = RoleReviewer
	}
	return Analyst{Name: p.Name, Role: role, Actions: slices.Clone(p.Actions), MayApprove: p.MayApprove, EntraOID: oid, UPN: upn, Groups: via}
}

// Identity is what tells two people apart for the four-eyes rule: the Entra
// object id of a person signed in to the console, else the signing key.
func (a Analyst) Identity() string {
	if a.EntraOID != "" {
		return "entra:" + strings.ToLower(a.EntraOID)
	}
	return "key:" + a.PublicKey
}

// ActorIdentity is Identity for an actor as a record or request names it.
func ActorIdentity(by audit.Actor) string {
	if by.EntraOID != "" {
		return "entra:" + strings.ToLower(by.EntraOID)
	}
	return "key:" + by.KeyID
}

// SamePerson reports whether a is the actor by: the same name (names are
// unique in the analysts file) or the same identity.
func SamePerson(a Analyst, by audit.Actor) bool {
	return strings.EqualFold(a.Name, by.Name) || (by.KeyID != "" || by.EntraOID != "") && a.Identity() == ActorIdentity(by)
}

// onBehalf turns a console signer into the person it speaks for: by must be
// an analyst actor naming the console's key and an Entra identity the
// directory lists, under the name the directory gives them. Any other signer
// is returned as it is.
func onBehalf(d *Directory, signer Analyst, by audit.Actor) (Analyst, error) {
	if signer.Role != RoleConsole {
		return signer, nil
	}
	switch {
	case by.Kind != "analyst":
		return Analyst{}, rejectf(Unauthorised, "console %s signed for a %s; a console speaks only for people signed in", signer.Name, short(by.Kind))
	case by.KeyID != "" && by.KeyID != signer.PublicKey:
		return Analyst{}, rejectf(Unauthorised, "signed by console %s but the body names key %q", signer.PublicKey, short(by.KeyID))
	case !ValidObjectID(by.EntraOID):
		return Analyst{}, rejectf(Unauthorised, "console %s signed without the person's Entra object id", signer.Name)
	case by.TokenID == "":
		return Analyst{}, rejectf(Unauthorised, "console %s signed without the sign-in's token identifier", signer.Name)
	}
	p, ok := d.Person(by.EntraOID, by.UPN, strings.Fields(by.Groups))
	if !ok {
		return Analyst{}, rejectf(Unauthorised, "Entra identity %s (%s) is not in the analysts file", by.EntraOID, short(by.UPN))
	}
	if !strings.EqualFold(p.Name, by.Name) {
		return Analyst{}, rejectf(Unauthorised, "the console named Entra identity %s %q; the analysts file calls them %q", by.EntraOID, short(by.Name), p.Name)
	}
	p.PublicKey, p.TokenID = signer.PublicKey, by.TokenID
	return p, nil
}

// OnBehalf resolves who a verified signer speaks for under the directory as
// it stands now: for a console key, the person by names (see onBehalf);
// for any other key, the signer.
func (v *Verifier) OnBehalf(signer Analyst, by audit.Actor) (Analyst, error) {
	return onBehalf(v.dir(), signer, by)
}

// EnsureConsoleKey returns the console key of a data directory, creating it
// on first use (keys/console.nk, mode 0600).
func EnsureConsoleKey(dataDir string) (kp nkeys.KeyPair, created bool, err error) {
	return ensureKey(ConsoleKeyPath(dataDir))
}

// ConsoleKeyPath is where the console key of dataDir lives.
func ConsoleKeyPath(dataDir string) string { return filepath.Join(dataDir, KeysDir, ConsoleKeyFile) }

// ConsoleKeyFile names the console key in the keys directory; LocalConsoleName
// names it in the audit trail.
const (
	ConsoleKeyFile   = "console.nk"
	LocalConsoleName = "local-console"
)
