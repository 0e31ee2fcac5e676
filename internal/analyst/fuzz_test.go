package analyst

import (
	"bytes"
	"testing"

	"github.com/nats-io/nkeys"
)

// FuzzSignatureCheck: any body either fails to canonicalise with an error, or its
// canonical form is stable, a signature over it verifies, and the same
// signature over a changed body is refused with a reason; nothing panics.
func FuzzSignatureCheck(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"id":"0b6f6c52-5a8e-4c1c-9a57-2f1d8f0c8a11","action":"disable_user","target":{"user":"a@b.com"},"requested_by":{"kind":"analyst","name":"a"},"reason":"r","requested_at":"2026-01-01T00:00:00Z"}`,
		`{"b":1,"a":[1,2,{"c":"\u00e9"}],"signature":"x"}`,
		`{"x":1e400}`, `{"a":"\ud800"}`, `[]`, `{`, `{"A":1,"a":2}`, `{"n":-0.0,"m":1.50}`,
	} {
		f.Add([]byte(s), byte(0))
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		f.Fatal(err)
	}
	pubKey, _ := kp.PublicKey()
	dir, err := NewDirectory(Analyst{Name: "fuzz", PublicKey: pubKey, Role: RoleAnalyst, Actions: []string{AllActions}})
	if err != nil {
		f.Fatal(err)
	}
	v := &Verifier{dir: func() *Directory { return dir }}
	f.Fuzz(func(t *testing.T, body []byte, flip byte) {
		c1, err := Canonical(body)
		if err != nil {
			if _, serr := SignBody(body, kp); serr == nil {
				t.Fatalf("signed a body that has no canonical form: %q", body)
			}
			return
		}
		c2, err := Canonical(c1)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("canonical form not stable: %q -> %q (%v)", c1, c2, err)
		}
		hdr, err := SignBody(body, kp)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		if _, err := v.authenticate(Message{Data: body, Header: hdr}, ""); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if len(body) == 0 {
			return
		}
		changed := bytes.Clone(body)
		changed[int(flip)%len(changed)] ^= 0x01
		cc, err := Canonical(changed)
		if err != nil || bytes.Equal(cc, c1) {
			return // not a different request
		}
		if _, err := v.authenticate(Message{Data: changed, Header: hdr}, ""); err == nil || ReasonOf(err) == "" {
			t.Fatalf("a changed body passed the signature check: %q (err %v)", changed, err)
		}
	})
}
