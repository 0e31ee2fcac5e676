package actions

import (
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// The Microsoft Defender for Endpoint actions (devices and indicators): their
// target and parameter validation, kept apart from the Graph actions'.
//
// Sources: https://learn.microsoft.com/defender-endpoint/api/isolate-machine
// (isolate, unisolate), https://learn.microsoft.com/defender-endpoint/api/post-ti-indicator
// (indicator types, "CIDR notation for IPs isn't supported").

// DefaultIndicatorExpiry is how long an indicator lasts when the request names
// no params.expires.
const DefaultIndicatorExpiry = 7 * 24 * time.Hour

// Indicator types of the Defender API (indicatorType).
const (
	IndicatorFileSha256 = "FileSha256"
	IndicatorFileSha1   = "FileSha1"
	IndicatorURL        = "Url"
	IndicatorDomain     = "DomainName"
	IndicatorIP         = "IpAddress"
)

// Indicator is what an indicator action blocks: Defender's indicatorType and
// indicatorValue.
type Indicator struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

var (
	machineIDRE = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	sha256RE    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	sha1RE      = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$`)
	// indicatorIDRE: Defender indicator ids are decimal numbers ("995").
	indicatorIDRE = regexp.MustCompile(`^[0-9]{1,19}$`)
)

// ValidMachineID reports whether s is a Defender machine id (40 hex digits).
func ValidMachineID(s string) bool { return machineIDRE.MatchString(s) }

// ValidDevice reports whether s names a device: a Defender machine id, an
// Entra device id (GUID) or a computer DNS name.
func ValidDevice(s string) bool {
	return ValidMachineID(s) || uuidRE.MatchString(s) || ValidHostName(s)
}

// ValidHostName reports whether s is a DNS name of letters, digits, hyphens
// (and underscores, which Windows computer names allow), at most 253 bytes.
func ValidHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !hostLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidDomain reports whether s is a domain name of at least two labels
// (no wildcard, no scheme).
func ValidDomain(s string) bool {
	return ValidHostName(s) && strings.Contains(strings.TrimSuffix(s, "."), ".") && !strings.Contains(s, "_")
}

// FileIndicator returns the indicator of a SHA-256 or SHA-1 hash.
func FileIndicator(h string) (Indicator, bool) {
	switch {
	case sha256RE.MatchString(h):
		return Indicator{Type: IndicatorFileSha256, Value: strings.ToLower(h)}, true
	case sha1RE.MatchString(h):
		return Indicator{Type: IndicatorFileSha1, Value: strings.ToLower(h)}, true
	}
	return Indicator{}, false
}

// ValidBlockURL reports whether s is an absolute http(s) URL with a host, of
// printable ASCII, at most 2,048 bytes.
func ValidBlockURL(s string) bool {
	if s == "" || len(s) > 2048 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
		return false
	}
	h := u.Hostname()
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return ValidDomain(h)
}

// URLHost is the lower-cased host of a URL target ("" when it has none).
func URLHost(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
}

// validateDefenderTarget checks the targets of the Defender actions; handled
// reports whether spec's target kind is one of them.
func validateDefenderTarget(spec Spec, t Target) (handled bool, err error) {
	switch spec.Target {
	case "device":
		if t.Device == "" {
			return true, reject("%s needs target.device (a Defender machine id, an Entra device id or a computer DNS name)", spec.Name)
		}
		if !ValidDevice(t.Device) {
			return true, reject("target.device %q is not a machine id, an Entra device id or a computer DNS name", short(t.Device))
		}
	case "file":
		if t.File == "" {
			return true, reject("%s needs target.file (a SHA-256 or SHA-1 hash)", spec.Name)
		}
		if _, ok := FileIndicator(t.File); !ok {
			return true, reject("target.file %q is not a SHA-256 or SHA-1 hash in hex", short(t.File))
		}
	case "url":
		if t.URL == "" {
			return true, reject("%s needs target.url", spec.Name)
		}
		if !ValidBlockURL(t.URL) {
			return true, reject("target.url %q is not an absolute http or https URL", short(t.URL))
		}
	case "domain":
		if t.Domain == "" {
			return true, reject("%s needs target.domain", spec.Name)
		}
		if !ValidDomain(t.Domain) {
			return true, reject("target.domain %q is not a domain name", short(t.Domain))
		}
	case "indicator":
		n := 0
		for _, v := range []string{t.File, t.URL, t.Domain, t.IP} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return true, reject("%s needs exactly one of target.file, target.url, target.domain, target.ip", spec.Name)
		}
		if _, err := TargetIndicator(t); err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

// TargetIndicator is the indicator a target names (file, url, domain or a
// single ip address). Any error is a *RejectError.
func TargetIndicator(t Target) (Indicator, error) {
	switch {
	case t.File != "":
		ind, ok := FileIndicator(t.File)
		if !ok {
			return Indicator{}, reject("target.file %q is not a SHA-256 or SHA-1 hash in hex", short(t.File))
		}
		return ind, nil
	case t.URL != "":
		if !ValidBlockURL(t.URL) {
			return Indicator{}, reject("target.url %q is not an absolute http or https URL", short(t.URL))
		}
		return Indicator{Type: IndicatorURL, Value: t.URL}, nil
	case t.Domain != "":
		if !ValidDomain(t.Domain) {
			return Indicator{}, reject("target.domain %q is not a domain name", short(t.Domain))
		}
		return Indicator{Type: IndicatorDomain, Value: strings.ToLower(strings.TrimSuffix(t.Domain, "."))}, nil
	case t.IP != "":
		a, err := singleAddress(t.IP)
		if err != nil {
			return Indicator{}, err
		}
		return Indicator{Type: IndicatorIP, Value: a.String()}, nil
	}
	return Indicator{}, reject("no indicator in the target")
}

// singleAddress accepts one address, never a CIDR: the Defender indicator
// API refuses CIDR notation ("CIDR notation for IPs isn't supported",
// https://learn.microsoft.com/defender-endpoint/api/post-ti-indicator).
func singleAddress(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		if p, err := netip.ParsePrefix(s); err == nil && p.IsSingleIP() {
			return p.Addr().Unmap(), nil
		}
		return netip.Addr{}, reject("target.ip %q is a range: Defender IP indicators take single addresses only (the API refuses CIDR notation)", short(s))
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, reject("target.ip %q is not an IP address", short(s))
	}
	return a.Unmap(), nil
}

// parseIsolate validates isolate_device's params.
func parseIsolate(_ Target, params map[string]any) (Params, error) {
	sel, err := boolParam(params, "selective")
	return Params{Selective: sel}, err
}

// parseIndicator validates an indicator action's target and params.expires
// (default DefaultIndicatorExpiry).
func parseIndicator(t Target, params map[string]any) (Params, error) {
	var p Params
	ind, err := TargetIndicator(t)
	if err != nil {
		return p, err
	}
	p.Indicator = &ind
	if ind.Type == IndicatorIP {
		p.Prefix = netip.PrefixFrom(netip.MustParseAddr(ind.Value), netip.MustParseAddr(ind.Value).BitLen())
	}
	p.Expires = DefaultIndicatorExpiry
	if v, ok := params["expires"]; ok {
		d, err := parseExpiry(v)
		if err != nil {
			return p, err
		}
		p.Expires = d
	}
	return p, nil
}

// parseRemoveIndicator validates remove_indicator: the indicator id Responder
// created (from the stored snapshot: the worker accepts it only as the
// inverse an undo or an expiry issues).
func parseRemoveIndicator(t Target, params map[string]any) (Params, error) {
	var p Params
	ind, err := TargetIndicator(t)
	if err != nil {
		return p, err
	}
	p.Indicator = &ind
	id, err := stringParam(params, "indicator_id")
	if err != nil {
		return p, err
	}
	if !indicatorIDRE.MatchString(id) {
		return p, reject("remove_indicator needs params.indicator_id, the id of the indicator Responder created")
	}
	p.IndicatorID = id
	return p, nil
}

// Guards of the Defender actions. Both run in the executor's Handler.Guard,
// which reads the device or the tenant's verified domains.
const (
	// GuardDevice refuses protected devices (listed machine ids or names, the
	// responder-protected machine tag) to playbooks, and holds the isolation
	// of a server or domain controller by a playbook for approval.
	GuardDevice Guard = "device"
	// GuardIndicator refuses indicators that would block the tenant's own
	// verified domains, Microsoft's domains, or a file hash on the allow list.
	GuardIndicator Guard = "indicator"
)
