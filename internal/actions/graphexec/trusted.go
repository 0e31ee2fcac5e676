package graphexec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
)

// TrustedRanges returns the IP ranges of the tenant's trusted IP named
// locations (ipNamedLocation with isTrusted true), read with
// GET /identity/conditionalAccess/namedLocations and cached for CacheTTL like
// the other directory reads. It implements actions.TrustedRanges: block_ip
// refuses a range that overlaps one, so a spray from the company's own
// egress cannot lock the company out.
//
// Microsoft: https://learn.microsoft.com/en-us/graph/api/conditionalaccessroot-list-namedlocations
// (Policy.Read.All) and https://learn.microsoft.com/en-us/graph/api/resources/ipnamedlocation
// (isTrusted: "true if this location is explicitly trusted", default false;
// ipRanges in IPv4 CIDR or an IPv6 format of RFC 5969).
//
// A range that cannot be parsed fails the read (closed): it could cover the
// address about to be blocked.
func (e *Executor) TrustedRanges(ctx context.Context) ([]netip.Prefix, error) {
	e.dir.mu.Lock()
	if e.dir.trustedAt != (time.Time{}) && time.Since(e.dir.trustedAt) < e.cfg.CacheTTL {
		out := e.dir.trusted
		e.dir.mu.Unlock()
		return out, nil
	}
	e.dir.mu.Unlock()
	raws, err := e.idpList(ctx, newCalls(), namedLocations, permCARead)
	if err != nil {
		return nil, err
	}
	out, err := trustedRanges(raws)
	if err != nil {
		return nil, err
	}
	e.dir.mu.Lock()
	e.dir.trusted, e.dir.trustedAt = out, time.Now()
	e.dir.mu.Unlock()
	return out, nil
}

// trustedRanges picks the ranges of trusted IP named locations, a pure function.
func trustedRanges(raws []json.RawMessage) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, r := range raws {
		var l struct {
			Type        string `json:"@odata.type"`
			DisplayName string `json:"displayName"`
			IsTrusted   bool   `json:"isTrusted"`
			IPRanges    []struct {
				CIDR string `json:"cidrAddress"`
			} `json:"ipRanges"`
		}
		if err := json.Unmarshal(r, &l); err != nil {
			return nil, &actions.Error{Class: actions.Permanent, Code: "BadNamedLocation", Message: fmt.Sprintf("decode a named location: %v", err)}
		}
		if l.Type != ipLocationType || !l.IsTrusted {
			continue
		}
		for _, x := range l.IPRanges {
			p, err := parseRange(x.CIDR)
			if err != nil {
				return nil, &actions.Error{Class: actions.Permanent, Code: "BadNamedLocation",
					Message: fmt.Sprintf("trusted named location %q has a range %q that cannot be read; refusing to judge blocks against it", l.DisplayName, x.CIDR)}
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func parseRange(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
