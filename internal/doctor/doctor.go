package doctor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/responder-sec/responder/internal/actions"
)

// Audiences.
const (
	Graph  = "graph"
	Manage = "management"
	// Exchange is the Exchange Online admin API (mailbox forwarding). The
	// token shows Exchange.ManageAsApp; the Exchange role the service
	// principal also needs is not in the token, so doctor cannot see it.
	Exchange = "exchange"
	// Defender is the Microsoft Defender for Endpoint API (defender.go).
	Defender = "defender"
)

// Kinds of checked parts.
const (
	KindFeed   = "feed"
	KindAction = "action"
	KindGuard  = "guard"
)

// Clause is satisfied when any one of its permissions is granted; the first is
// the least privileged, the one doctor names when none is.
type Clause []string

// Requirement is what one feed, action or guard needs: every clause.
type Requirement struct {
	Kind     string
	Name     string
	Audience string
	Clauses  []Clause
	// Role is the directory role the app's service principal needs besides
	// the permissions (the catalogue's Spec.Role; "" none).
	Role string
}

func req(kind, name, aud string, clauses ...Clause) Requirement {
	return Requirement{Kind: kind, Name: name, Audience: aud, Clauses: clauses}
}

// Requirements is the permission table: feeds by source name, actions by
// message name (from the action catalogue, the one source of truth), and the
// protected-identity guard (members of directory roles).
func Requirements() []Requirement {
	out := []Requirement{
		req(KindFeed, "audit", Manage, Clause{"ActivityFeed.Read"}),
		req(KindFeed, "signin", Graph, Clause{"AuditLog.Read.All"}),
		req(KindFeed, "risk_detection", Graph, Clause{"IdentityRiskEvent.Read.All"}),
		req(KindFeed, "risky_user", Graph, Clause{"IdentityRiskyUser.Read.All", "IdentityRiskyUser.ReadWrite.All"}),
		// Defender XDR alerts: GET /security/alerts_v2
		// (https://learn.microsoft.com/graph/api/security-list-alerts_v2).
		req(KindFeed, "alert", Graph, Clause{"SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"}),
	}
	for _, s := range actions.Specs() {
		var aud string
		switch s.API {
		case actions.APIGraph:
			aud = Graph
		case actions.APIExchange:
			aud = Exchange
		case actions.APIDefender:
			aud = Defender
		default:
			continue // undo calls no Microsoft API
		}
		clauses := make([]Clause, len(s.Permissions))
		for i, c := range s.Permissions {
			clauses[i] = Clause(c)
		}
		r := req(KindAction, string(s.Name), aud, clauses...)
		r.Role = s.Role
		out = append(out, r)
	}
	return append(out, req(KindGuard, "protected_roles", Graph, Clause{"RoleManagement.Read.Directory", "Directory.Read.All", "RoleManagement.ReadWrite.Directory"}))
}

// Config says what to check with which credential.
type Config struct {
	Credential azcore.TokenCredential
	// Scopes per audience: m365.Credentials.GraphScope() and ManageScope().
	GraphScope, ManageScope string
	// ExchangeScope is m365.Credentials.ExchangeScope(); "" leaves the
	// Exchange admin API actions out unless Actions names them.
	ExchangeScope string
	// DefenderScope is m365.DefenderScope; "" leaves the Defender for
	// Endpoint actions out unless Actions names them.
	DefenderScope string
	// Feeds and Actions configured (nil: every one in the table). A name not in
	// the table is reported as unknown.
	Feeds, Actions []string
	// SkipGuard leaves out the protected-roles check.
	SkipGuard bool
	// GraphURL (m365.Credentials.GraphURL, "" for Microsoft's) and
	// HTTPClient (nil: a default client) read the service principal's
	// directory roles; SkipDirectoryRoles leaves that check out.
	GraphURL           string
	HTTPClient         *http.Client
	SkipDirectoryRoles bool
	// ExchangeProbe (graphexec.InvokeCommandProbe; nil: not probed) checks
	// that the Exchange admin API's InvokeCommand still answers (exchange.go).
	ExchangeProbe func(context.Context) error
}

// Row is the verdict on one part.
type Row struct {
	Kind, Name, Audience string
	OK                   bool
	Missing              []string // least-privileged permission of each unmet clause
	Problem              string   // when the check itself could not run
	// MissingRole names the directory role the service principal lacks;
	// RoleNote says when a role is needed only in some cases and is absent.
	MissingRole, RoleNote string
}

// Report is doctor's answer.
type Report struct {
	// Roles granted per audience (nil when no token could be had).
	Roles map[string][]string
	// TokenErrors per audience.
	TokenErrors map[string]string
	// DirectoryRoles held by the service principal (nil when not read);
	// DirectoryRolesError says why they could not be read.
	DirectoryRoles      []string
	DirectoryRolesError string
	// ExchangeAPI says the InvokeCommand probe worked; ExchangeAPIError why
	// it did not ("" both: not probed).
	ExchangeAPI, ExchangeAPIError string
	Rows                          []Row
}

// Check gets a token per needed audience and checks every configured part.
func Check(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Credential == nil || cfg.GraphScope == "" || cfg.ManageScope == "" {
		return Report{}, errors.New("doctor: a credential and both scopes are required")
	}
	table := Requirements()
	var selected []Requirement
	var unknown []Row
	pick := func(kind string, names []string) {
		if names == nil {
			for _, r := range table {
				if r.Kind == kind && (r.Audience != Exchange || cfg.ExchangeScope != "") && (r.Audience != Defender || cfg.DefenderScope != "") {
					selected = append(selected, r)
				}
			}
			return
		}
		for _, n := range names {
			i := slices.IndexFunc(table, func(r Requirement) bool { return r.Kind == kind && r.Name == n })
			if i < 0 {
				unknown = append(unknown, Row{Kind: kind, Name: n, Problem: "not in doctor's permission table"})
				continue
			}
			selected = append(selected, table[i])
		}
	}
	pick(KindFeed, cfg.Feeds)
	pick(KindAction, cfg.Actions)
	if !cfg.SkipGuard {
		pick(KindGuard, nil)
	}

	rep := Report{Roles: map[string][]string{}, TokenErrors: map[string]string{}}
	scopes := map[string]string{Graph: cfg.GraphScope, Manage: cfg.ManageScope, Exchange: cfg.ExchangeScope, Defender: cfg.DefenderScope}
	for _, aud := range []string{Graph, Manage, Exchange, Defender} {
		if !slices.ContainsFunc(selected, func(r Requirement) bool { return r.Audience == aud }) {
			continue
		}
		if scopes[aud] == "" {
			rep.TokenErrors[aud] = "no scope configured for " + aud
			continue
		}
		roles, err := grantedRoles(ctx, cfg.Credential, scopes[aud])
		if err != nil {
			rep.TokenErrors[aud] = err.Error()
			continue
		}
		rep.Roles[aud] = roles
	}
	needRoles := !cfg.SkipDirectoryRoles && slices.ContainsFunc(selected, func(r Requirement) bool { return r.Role != "" })
	if needRoles {
		if names, err := directoryRoles(ctx, cfg); err != nil {
			rep.DirectoryRolesError = err.Error()
		} else {
			rep.DirectoryRoles = names
			if rep.DirectoryRoles == nil {
				rep.DirectoryRoles = []string{}
			}
		}
	}
	for _, r := range selected {
		row := Row{Kind: r.Kind, Name: r.Name, Audience: r.Audience}
		roles, ok := rep.Roles[r.Audience]
		if !ok {
			row.Problem = "no " + r.Audience + " token: " + rep.TokenErrors[r.Audience]
		} else {
			for _, c := range r.Clauses {
				if !slices.ContainsFunc(c, func(p string) bool { return slices.Contains(roles, p) }) {
					row.Missing = append(row.Missing, c[0])
				}
			}
			row.OK = len(row.Missing) == 0
		}
		if need, ok := ParseRole(r.Role); ok && needRoles && row.Problem == "" {
			switch {
			case rep.DirectoryRolesError != "":
				row.OK, row.Problem = false, "cannot read the service principal's directory roles: "+rep.DirectoryRolesError
			case slices.ContainsFunc(need.AnyOf, func(n string) bool { return slices.Contains(rep.DirectoryRoles, n) }):
			case need.Conditional:
				row.RoleNote = "without the directory role " + need.Role + ": " + need.Text
			default:
				row.OK, row.MissingRole = false, need.Role
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.probeExchange(ctx, cfg)
	rep.probeLicences(ctx, cfg) // licence.go: a feed the tenant is not licensed for
	rep.Rows = append(rep.Rows, unknown...)
	return rep, nil
}

// grantedRoles asks for a token and reads its roles claim.
func grantedRoles(ctx context.Context, cred azcore.TokenCredential, scope string) ([]string, error) {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return nil, fmt.Errorf("get token for %s: %w", scope, err)
	}
	return RolesClaim(tok.Token)
}

// RolesClaim reads the "roles" claim of a JWT access token without verifying
// its signature (see the package doc). An error never includes the token.
func RolesClaim(token string) ([]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("the access token is not a JWT; cannot read its roles")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, errors.New("the access token's payload is not base64url")
	}
	var claims struct {
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, errors.New("the access token's payload is not JSON")
	}
	return claims.Roles, nil
}

// OK reports whether everything checked can work.
func (r Report) OK() bool {
	for _, row := range r.Rows {
		if !row.OK {
			return false
		}
	}
	return true
}

// Err lists what cannot work, or is nil.
func (r Report) Err() error {
	var lines []string
	for _, row := range r.Rows {
		switch {
		case row.OK:
		case len(row.Missing) > 0 || row.MissingRole != "":
			lines = append(lines, fmt.Sprintf("%s %s: missing %s", row.Kind, row.Name, row.missing()))
		default:
			lines = append(lines, fmt.Sprintf("%s %s: %s", row.Kind, row.Name, row.Problem))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("doctor: %d of %d checks fail:\n  %s", len(lines), len(r.Rows), strings.Join(lines, "\n  "))
}

// Print writes the report as a table.
func (r Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tAUDIENCE\tSTATUS\tMISSING")
	for _, row := range r.Rows {
		status, missing := "ok", ""
		switch {
		case row.OK:
			missing = row.RoleNote
		case len(row.Missing) > 0 || row.MissingRole != "":
			status, missing = "MISSING", row.missing()
		default:
			status, missing = "ERROR", row.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", row.Kind, row.Name, row.Audience, status, missing)
	}
	for _, aud := range []string{Graph, Manage, Exchange} {
		if roles, ok := r.Roles[aud]; ok {
			fmt.Fprintf(tw, "\ngranted (%s):\t%s\n", aud, strings.Join(roles, ", "))
		}
	}
	if r.DirectoryRoles != nil {
		fmt.Fprintf(tw, "\ndirectory roles:\t%s\n", strings.Join(r.DirectoryRoles, ", "))
	} else if r.DirectoryRolesError != "" {
		fmt.Fprintf(tw, "\ndirectory roles:\tnot read: %s\n", r.DirectoryRolesError)
	}
	r.printExchange(tw)
	return tw.Flush()
}

// missing lists the unmet permissions and the missing directory role.
func (row Row) missing() string {
	m := slices.Clone(row.Missing)
	if row.MissingRole != "" {
		m = append(m, "directory role "+row.MissingRole)
	}
	return strings.Join(m, ", ")
}
