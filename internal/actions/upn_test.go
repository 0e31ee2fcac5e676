package actions

import (
	"strings"
	"testing"
)

// TestValidUserForms: isUUID and validUPN accept exactly what uuidRE and
// upnRE accept.
func TestValidUserForms(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, s := range []string{
		"", "a@b.c", "alice@contoso.com", "Alice.Smith@Contoso.onmicrosoft.com", "a@b", "@b.c", "a@.b.c", "a@b..c", "a@b.c.",
		"a@-b.c", "a@b-.c", "a@b-c.d-e.f", "a@b.c@d.e", "a b@c.d", "a`b@c.d", "!#$%&'*+/=?^_{|}~.-@x.yz", "é@b.c", "a@é.c",
		strings.Repeat("a", 113) + "@b.c", strings.Repeat("a", 114) + "@b.c", "a@" + long + ".c", "a@" + long + "a.c",
		"a@b.c\n", "\na@b.c", "a@b.c ", "a@1.2", "a@b_c.d",
		"00000000-0000-0000-0000-000000000000", "0000000A-aaaa-FFFF-ffff-0123456789ab", "0000000g-0000-0000-0000-000000000000",
		"00000000-0000-0000-0000-0000000000000", "00000000-0000-0000-0000-00000000000", "00000000_0000-0000-0000-000000000000",
		"00000000-0000-0000-0000-000000000000\n",
	} {
		if got, want := isUUID(s), uuidRE.MatchString(s); got != want {
			t.Errorf("isUUID(%q) = %v, uuidRE %v", s, got, want)
		}
		if got, want := validUPN(s), upnRE.MatchString(s); got != want {
			t.Errorf("validUPN(%q) = %v, upnRE %v", s, got, want)
		}
	}
}

// FuzzValidUserForms: the same for any string.
func FuzzValidUserForms(f *testing.F) {
	for _, s := range []string{"alice@contoso.com", "a@b-c.d", "00000000-0000-0000-0000-000000000000", "a@b..c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isUUID(s), uuidRE.MatchString(s); got != want {
			t.Fatalf("isUUID(%q) = %v, uuidRE %v", s, got, want)
		}
		if got, want := validUPN(s), upnRE.MatchString(s); got != want {
			t.Fatalf("validUPN(%q) = %v, upnRE %v", s, got, want)
		}
	})
}
