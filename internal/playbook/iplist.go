package playbook

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// maxIPListBytes bounds an IP list file.
const maxIPListBytes = 32 << 20

// ipList is an IP list file loaded once: addresses in a set, prefixes in a slice.
type ipList struct {
	path  string
	addrs map[netip.Addr]bool
	nets  []netip.Prefix
}

func (l *ipList) contains(a netip.Addr) bool {
	if l.addrs[a] {
		return true
	}
	for _, p := range l.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// loadIPList reads one address or CIDR per line; "#" starts a comment. Every
// bad line is reported with its line number.
func loadIPList(path string) (*ipList, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ip list: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("ip list: %w", err)
	}
	if fi.Size() > maxIPListBytes {
		return nil, nil, fmt.Errorf("ip list %s: %d bytes, more than the limit of %d", path, fi.Size(), maxIPListBytes)
	}
	l := &ipList{path: path, addrs: map[netip.Addr]bool{}}
	var bad []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s:%d: %q is not an address or CIDR", path, line, s))
				continue
			}
			p = p.Masked()
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if p.Bits() == p.Addr().BitLen() {
				l.addrs[p.Addr()] = true
			} else {
				l.nets = append(l.nets, p)
			}
			continue
		}
		a, ok := parseIP(s)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s:%d: %q is not an address or CIDR", path, line, s))
			continue
		}
		l.addrs[a] = true
	}
	if err := sc.Err(); err != nil {
		return nil, bad, fmt.Errorf("ip list %s: line %d: %w", path, line+1, err)
	}
	return l, bad, nil
}
