package actions

import (
	"strings"

	"github.com/responder-sec/responder/internal/event"
)

// Hand-written forms of uuidRE and upnRE for ValidUser, which the matcher
// calls for every playbook that fires (a regular expression costs about a
// microsecond and a half per user there). They accept exactly what the
// expressions accept: TestValidUserForms and FuzzValidUserForms compare them.

// isUUID is uuidRE.MatchString: 8-4-4-4-12 hexadecimal digits.
func isUUID(s string) bool { return event.IsGUID(s) }

// upnLocal marks the bytes of upnRE's local part: RFC 5322 atext and dots.
var upnLocal = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+/=?^_{|}~.-" {
		t[c] = true
	}
	return t
}()

// validUPN is upnRE.MatchString: 1 to 113 local-part bytes, '@', then two or
// more dot-separated labels of 1 to 63 letters, digits and hyphens that
// begin and end with a letter or digit.
func validUPN(s string) bool {
	at := strings.IndexByte(s, '@')
	if at < 1 || at > 113 {
		return false
	}
	for i := 0; i < at; i++ {
		if !upnLocal[s[i]] {
			return false
		}
	}
	dom, labels := s[at+1:], 0
	for {
		lab, rest, more := strings.Cut(dom, ".")
		if !dnsLabel(lab) {
			return false
		}
		labels++
		if !more {
			return labels >= 2
		}
		dom = rest
	}
}

// dnsLabel: [A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?
func dnsLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
