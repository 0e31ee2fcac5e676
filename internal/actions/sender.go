package actions

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// GuardDomain refuses a block of one of the tenant's own verified domains (or
// an address in one) and of Microsoft's own domains: blocking them would cut
// the organisation off from its own mail or from Microsoft's service mail
// (security notifications, MFA, quarantine and account-protection messages).
const GuardDomain Guard = "domain"

// VerifiedDomainSource reads the tenant's verified domains (graphexec
// implements it, cached; RESPONDER_VERIFIED_DOMAINS overrides it).
type VerifiedDomainSource interface {
	VerifiedDomains(ctx context.Context) ([]string, error)
}

// MicrosoftDomains are Microsoft's own mail and service domains, never
// blocked, with every subdomain: Microsoft 365 sends security, quarantine, MFA
// and account notifications from them (e.g. msonlineservicesteam@microsoftonline.com,
// account-security-noreply@accountprotection.microsoft.com,
// quarantine@messaging.microsoft.com:
// https://learn.microsoft.com/defender-office-365/quarantine-quarantine-notifications),
// and onmicrosoft.com holds every tenant's initial domain.
var microsoftDomains = []string{
	"microsoft.com", "microsoftonline.com", "onmicrosoft.com", "office.com", "office365.com",
	"office.net", "outlook.com", "hotmail.com", "live.com", "msn.com", "microsoft365.com",
	"sharepoint.com", "windows.net", "azure.com", "azure.net", "protection.outlook.com",
	"microsoftsupport.com", "exchangelabs.com", "skype.com", "teams.microsoft.com",
}

// MicrosoftDomains returns the Microsoft domains the domain guard protects.
func MicrosoftDomains() []string { return append([]string(nil), microsoftDomains...) }

// MaxSenderLength bounds a sender entry: Exchange's SMTP address limit
// (320 characters: 64 local part, @, 255 domain).
const MaxSenderLength = 320

var domainRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z][a-z0-9-]{0,62}$`)

// ParseSender validates a block_sender target: an e-mail address
// (local@domain) or a domain, the two forms the Tenant Allow/Block List takes
// for senders
// (https://learn.microsoft.com/defender-office-365/tenant-allow-block-list-email-spoof-configure).
// It returns the value lower-cased and whether it is a domain. Wildcards, IP
// literals, display names, brackets, spaces and control characters are
// refused: the list's *.TLD syntax blocks every subdomain and is for an
// analyst in the portal, never for an automated request.
func ParseSender(s string) (value string, isDomain bool, err error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return "", false, reject("target.sender is missing (an e-mail address or a domain)")
	}
	if len(v) > MaxSenderLength {
		return "", false, reject("target.sender is longer than %d characters", MaxSenderLength)
	}
	if strings.ContainsAny(v, "*?%<>\"' \t,;:[]()\\") || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		return "", false, reject("target.sender %q is not an e-mail address or a domain (no wildcards, display names, brackets or special characters)", short(s))
	}
	if at := strings.LastIndexByte(v, '@'); at >= 0 {
		local, domain := v[:at], v[at+1:]
		if !senderRE.MatchString(v) || strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") || !domainRE.MatchString(domain) {
			return "", false, reject("target.sender %q is not an e-mail address", short(s))
		}
		return v, false, nil
	}
	if len(v) > 255 || !domainRE.MatchString(v) {
		return "", false, reject("target.sender %q is not an e-mail address or a domain", short(s))
	}
	return v, true, nil
}

// SenderDomain is the domain part of a sender (itself for a domain).
func SenderDomain(sender string) string {
	v := strings.ToLower(strings.TrimSpace(sender))
	if at := strings.LastIndexByte(v, '@'); at >= 0 {
		return v[at+1:]
	}
	return v
}

// CheckDomain is the domain guard, a pure function: the domain must not be,
// or be under, one of the tenant's verified domains or Microsoft's domains.
func CheckDomain(domain string, verified []string) Decision {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	under := func(parent string) bool {
		parent = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(parent)), ".")
		return parent != "" && (d == parent || strings.HasSuffix(d, "."+parent))
	}
	for _, v := range verified {
		if under(v) {
			return Decision{Reason: fmt.Sprintf("%s is the tenant's own verified domain %s (or under it): blocking it would stop the organisation's own mail", d, v)}
		}
	}
	for _, m := range microsoftDomains {
		if under(m) {
			return Decision{Reason: fmt.Sprintf("%s is Microsoft's domain %s (or under it): Microsoft 365 service, security and quarantine mail comes from it", d, m)}
		}
	}
	return Decision{Allow: true}
}

// domainGuard runs CheckDomain on the request's target, reading the verified
// domains; without them it fails closed.
func (w *Worker) domainGuard(ctx context.Context, j *job) (verdict, bool) {
	domain := targetDomain(j.req.Target)
	if domain == "" {
		return next(), false
	}
	if w.cfg.Domains == nil {
		return w.failure(ctx, j, &Error{Class: Permanent, Code: "NoVerifiedDomains",
			Message: "the tenant's verified domains cannot be read (no source configured): refusing to block " + domain}), true
	}
	verified, err := w.cfg.Domains.VerifiedDomains(ctx)
	if err != nil {
		// Fail closed: without the list no domain is known to be foreign.
		return w.failure(ctx, j, AsError(fmt.Errorf("read the tenant's verified domains: %w", err))), true
	}
	if d := CheckDomain(domain, verified); !d.Allow {
		return w.final(j, audit.Refused, d.Reason), true
	}
	return next(), false
}

// targetDomain is the domain a domain-guarded action would block.
func targetDomain(t Target) string {
	if t.Sender != "" {
		return SenderDomain(t.Sender)
	}
	return ""
}

// DefaultSenderBlock is how long a block_sender lasts without params.expires:
// the Defender portal's default for sender block entries (30 days).
const DefaultSenderBlock = 30 * 24 * time.Hour

// TABLRole is the role the app's service principal needs to add and remove
// Tenant Allow/Block List entries
// (https://learn.microsoft.com/defender-office-365/tenant-allow-block-list-email-spoof-configure):
// the Entra Security Administrator role, or the Exchange role groups
// Organization Management or Security Operator (Tenant AllowBlockList Manager).
const TABLRole = "Security Administrator (or Exchange Organization Management, or the Tenant AllowBlockList Manager role)"

func parseBlockSender(t Target, params map[string]any) (Params, error) {
	var p Params
	v, dom, err := ParseSender(t.Sender)
	if err != nil {
		return p, err
	}
	p.Sender, p.SenderIsDomain = v, dom
	p.Expires = DefaultSenderBlock
	if x, ok := params["expires"]; ok {
		if s, _ := x.(string); strings.EqualFold(strings.TrimSpace(s), "never") {
			p.Expires, p.NoExpiration = 0, true
			return p, nil
		}
		// The Tenant Allow/Block List takes a block entry's specific
		// expiration date at most 90 days ahead (MaxExpiry).
		d, err := parseExpiry(x)
		if err != nil {
			return p, err
		}
		p.Expires = d
	}
	return p, nil
}

func parseUnblockSender(t Target, params map[string]any) (Params, error) {
	var p Params
	v, dom, err := ParseSender(t.Sender)
	if err != nil {
		return p, err
	}
	p.Sender, p.SenderIsDomain = v, dom
	id, err := stringParam(params, "entry_id")
	if err != nil {
		return p, err
	}
	if !validGraphID(id) {
		return p, reject("unblock_sender needs params.entry_id: the Tenant Allow/Block List entry block_sender created")
	}
	p.EntryID = id
	return p, nil
}
