package analyst

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
)

const (
	adaOID  = "6f1c0000-0000-4000-8000-0000000000a1"
	benOID  = "6f1c0000-0000-4000-8000-0000000000b2"
	soc1GID = "0a9b0000-0000-4000-8000-0000000000c3"
	evilOID = "6f1c0000-0000-4000-8000-0000000000e4"
)

// consoleFixture is the fixture's directory plus a console key and its people:
// ada (revoke_sessions, may approve), ben (a reviewer only), and the group
// soc-tier1 (disable_user).
func consoleFixture(t *testing.T) (*fixture, nkeys.KeyPair) {
	t.Helper()
	f := newFixture(t)
	console, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse([]byte(`version: 1
analysts:
  - name: alice
    public_key: ` + pub(t, f.alice) + `
    actions: [disable_user]
engines:
  - name: engine-1
    public_key: ` + pub(t, f.engine) + `
consoles:
  - name: console
    public_key: ` + pub(t, console) + `
people:
  - name: ada
    entra_object_id: ` + adaOID + `
    actions: [revoke_sessions]
    may_approve: true
  - name: ben
    entra_object_id: ` + strings.ToUpper(benOID) + `
    actions: []
groups:
  - name: soc-tier1
    entra_group_id: ` + soc1GID + `
    actions: [disable_user]
`))
	if err != nil {
		t.Fatal(err)
	}
	f.v.dir = func() *Directory { return d }
	return f, console
}

func (f *fixture) personRequest(action actions.Name, by audit.Actor) *actions.Request {
	return &actions.Request{Version: actions.Version, ID: uuid.NewString(), Action: action,
		Target: actions.Target{User: "carol@contoso.com"}, RequestedBy: by, Reason: "test", RequestedAt: f.now}
}

func TestConsolePeople(t *testing.T) {
	f, console := consoleFixture(t)
	ada := audit.Actor{Kind: "analyst", Name: "ada", EntraOID: adaOID, UPN: "ada@contoso.com", TokenID: "uti-1"}

	// ada may revoke sessions: the request is hers, with her sign-in as evidence.
	who, err := f.deliver(t, sign(t, f.personRequest(actions.RevokeSessions, ada), console), 1)
	if err != nil {
		t.Fatalf("ada's revoke_sessions through the console: %v", err)
	}
	if who.Name != "ada" || who.EntraOID != adaOID || who.TokenID != "uti-1" || who.Actor().UPN != "ada@contoso.com" {
		t.Fatalf("verified as %+v", who)
	}
	// A member of soc-tier1 (by the token's groups claim) may disable users.
	member := audit.Actor{Kind: "analyst", Name: "gus@contoso.com", EntraOID: "6f1c0000-0000-4000-8000-0000000000f5", UPN: "gus@contoso.com", TokenID: "uti-2", Groups: soc1GID}
	if who, err := f.deliver(t, sign(t, f.personRequest(actions.DisableUser, member), console), 2); err != nil || who.Actor().Groups != soc1GID {
		t.Fatalf("group member's disable_user: %+v, %v", who, err)
	}

	// Whatever the page offered, the engine checks the person's role.
	cases := []struct {
		name   string
		action actions.Name
		by     audit.Actor
		signer nkeys.KeyPair
		want   Reason
	}{
		{"ada may not disable", actions.DisableUser, ada, console, Unauthorised},
		{"ben is a reviewer", actions.RevokeSessions, audit.Actor{Kind: "analyst", Name: "ben", EntraOID: benOID, UPN: "ben@contoso.com", TokenID: "u"}, console, Unauthorised},
		{"someone not in the file", actions.RevokeSessions, audit.Actor{Kind: "analyst", Name: "eve", EntraOID: evilOID, UPN: "eve@contoso.com", TokenID: "u"}, console, Unauthorised},
		{"a name that is not the object id's", actions.RevokeSessions, audit.Actor{Kind: "analyst", Name: "alice", EntraOID: adaOID, UPN: "ada@contoso.com", TokenID: "u"}, console, Unauthorised},
		{"no object id", actions.RevokeSessions, audit.Actor{Kind: "analyst", Name: "ada", UPN: "ada@contoso.com", TokenID: "u"}, console, Unauthorised},
		{"no sign-in evidence", actions.RevokeSessions, audit.Actor{Kind: "analyst", Name: "ada", EntraOID: adaOID, UPN: "ada@contoso.com"}, console, Unauthorised},
		{"a console posing as a playbook", actions.RevokeSessions, audit.Actor{Kind: "playbook", Name: "high-risk-user"}, console, Unauthorised},
		{"a group the file does not list", actions.DisableUser, audit.Actor{Kind: "analyst", Name: "gus@contoso.com", EntraOID: "6f1c0000-0000-4000-8000-0000000000f5", UPN: "gus@contoso.com", TokenID: "u", Groups: "0a9b0000-0000-4000-8000-0000000000ff"}, console, Unauthorised},
		// An analyst key cannot claim to be a console person.
		{"an analyst key naming a person", actions.DisableUser, audit.Actor{Kind: "analyst", Name: "ada", EntraOID: adaOID, TokenID: "u"}, f.alice, Unauthorised},
		{"an analyst key adding an object id to itself", actions.DisableUser, audit.Actor{Kind: "analyst", Name: "alice", EntraOID: adaOID, TokenID: "u"}, f.alice, Unauthorised},
	}
	for i, c := range cases {
		_, err := f.deliver(t, sign(t, f.personRequest(c.action, c.by), c.signer), uint64(10+i))
		if ReasonOf(err) != c.want {
			t.Errorf("%s: got %v, want %s", c.name, err, c.want)
		}
	}
	// The verifier's later checks (follow-up steps, held requests) agree.
	if why := f.v.Allowed(audit.Actor{Kind: "analyst", Name: "ada", KeyID: pub(t, console), EntraOID: adaOID, TokenID: "u"}, actions.DisableUser); why == "" {
		t.Error("Allowed: ada may not disable users")
	}
	if why := f.v.Allowed(audit.Actor{Kind: "analyst", Name: "ada", KeyID: pub(t, console), EntraOID: adaOID, TokenID: "u"}, actions.RevokeSessions); why != "" {
		t.Errorf("Allowed: %s", why)
	}
}

func TestConsoleCommands(t *testing.T) {
	f, console := consoleFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	send := func(by audit.Actor) (Analyst, error) {
		by.KeyID = pub(t, console)
		body, _ := json.Marshal(map[string]any{"id": uuid.NewString(), "by": by, "at": f.now})
		h, err := SignBody(body, console)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			ID string      `json:"id"`
			By audit.Actor `json:"by"`
		}
		_ = json.Unmarshal(body, &c)
		return f.v.VerifyCommandBy(ctx, c.ID, c.By, f.now, Message{Data: body, Header: h})
	}
	who, err := send(audit.Actor{Kind: "analyst", Name: "ada", EntraOID: adaOID, UPN: "ada@contoso.com", TokenID: "u"})
	if err != nil || !who.MayApprove || who.Identity() != "entra:"+adaOID {
		t.Fatalf("ada's command: %+v, %v", who, err)
	}
	ben, err := send(audit.Actor{Kind: "analyst", Name: "ben", EntraOID: benOID, UPN: "ben@contoso.com", TokenID: "u"})
	if err != nil || ben.MayApprove || ben.Identity() == who.Identity() {
		t.Fatalf("ben's command: %+v, %v (two people through one console key are two identities)", ben, err)
	}
	if _, err := send(audit.Actor{Kind: "analyst", Name: "eve", EntraOID: evilOID, TokenID: "u"}); ReasonOf(err) != Unauthorised {
		t.Fatalf("an unlisted person's command: %v", err)
	}
	if !SamePerson(who, audit.Actor{Name: "someone", KeyID: pub(t, console), EntraOID: strings.ToUpper(adaOID)}) {
		t.Error("SamePerson: the same object id is the same person")
	}
	if SamePerson(who, audit.Actor{Name: "ben", KeyID: pub(t, console), EntraOID: benOID}) {
		t.Error("SamePerson: another object id behind the same console key is someone else")
	}
}

func TestParsePeople(t *testing.T) {
	key, _ := NewKey()
	for _, c := range []struct{ name, yaml, want string }{
		{"bad object id", "people:\n  - name: ada\n    entra_object_id: ada@contoso.com\n    actions: []\n", "not an object id"},
		{"group id under people", "people:\n  - name: ada\n    entra_group_id: " + soc1GID + "\n", "entra_object_id, not entra_group_id"},
		{"unknown action", "people:\n  - name: ada\n    entra_object_id: " + adaOID + "\n    actions: [format_disk]\n", "unknown action"},
		{"same object id twice", "people:\n  - name: ada\n    entra_object_id: " + adaOID + "\n  - name: ada2\n    entra_object_id: " + strings.ToUpper(adaOID) + "\n", "listed twice"},
		{"a person named like a key", "analysts:\n  - name: ada\n    public_key: " + pub(t, key) + "\n    actions: [\"*\"]\npeople:\n  - name: ADA\n    entra_object_id: " + adaOID + "\n", "listed twice"},
		{"console with actions", "consoles:\n  - name: c\n    public_key: " + pub(t, key) + "\n    actions: [disable_user]\n", "no actions"},
	} {
		_, err := Parse([]byte("version: 1\n" + c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
}
