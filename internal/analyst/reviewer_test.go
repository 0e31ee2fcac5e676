package analyst

import (
	"context"
	"strings"
	"testing"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/bus"
)

func TestReviewersSection(t *testing.T) {
	a, _ := NewKey()
	r, _ := NewKey()
	e, _ := NewKey()
	file := "version: 1\nanalysts:\n  - name: alice\n    public_key: " + pub(t, a) + "\n    actions: [revoke_sessions]\n" +
		"engines:\n  - name: engine-1\n    public_key: " + pub(t, e) + "\n" +
		"reviewers:\n  - name: carol\n    public_key: " + pub(t, r) + "\n"
	d, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	carol, ok := d.Lookup(pub(t, r))
	if !ok || carol.Role != RoleReviewer || !carol.MayReview() || carol.Allowed("revoke_sessions") || carol.Actor().Kind != "reviewer" {
		t.Fatalf("reviewer %+v", carol)
	}
	want := map[string]bus.Identity{
		pub(t, a): {PublicKey: pub(t, a), Analyst: true, Reviewer: true},
		pub(t, e): {PublicKey: pub(t, e), Engine: true},
		pub(t, r): {PublicKey: pub(t, r), Reviewer: true},
	}
	ids := d.BusIdentities()
	if len(ids) != 3 {
		t.Fatalf("identities %+v", ids)
	}
	for _, id := range ids {
		if want[id.PublicKey] != id {
			t.Errorf("identity %+v, want %+v", id, want[id.PublicKey])
		}
	}
	for _, bad := range []string{"    actions: [\"*\"]\n", "    may_approve: true\n"} {
		if _, err := Parse([]byte(file + bad)); err == nil || !strings.Contains(err.Error(), "reviewers[0]") {
			t.Errorf("reviewer with %q: %v", strings.TrimSpace(bad), err)
		}
	}
}

// A reviewer's key signs nothing the engine acts on.
func TestReviewerCannotRequest(t *testing.T) {
	f := newFixture(t)
	r, _ := NewKey()
	dir, err := NewDirectory(Analyst{Name: "carol", PublicKey: pub(t, r), Role: RoleReviewer})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Directory: func() *Directory { return dir }, Seen: f.v.seen, Now: f.v.now})
	if err != nil {
		t.Fatal(err)
	}
	req := f.request("carol", actions.RevokeSessions)
	s := sign(t, req, r)
	if _, err := v.Verify(context.Background(), req, Message{Data: s.Body, Header: s.Header, Seq: 1}); ReasonOf(err) != Unauthorised {
		t.Fatalf("reviewer's request: %v", err)
	}
}
