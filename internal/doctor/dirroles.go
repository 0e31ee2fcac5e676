package doctor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Directory roles: permissions are in the token, directory roles are not.
// Doctor reads the service principal's active role assignments,
// GET /roleManagement/directory/roleAssignments?$filter=principalId eq '<id>'
// ("List unifiedRoleAssignments": $filter on principalId and roleDefinitionId,
// permission RoleManagement.Read.Directory;
// https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments),
// where the id is the app-only token's oid claim (the service principal's
// object id). A built-in role's roleDefinitionId is its template id
// ("Microsoft Entra built-in roles",
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/permissions-reference).

// builtinRoles maps role template ids to names.
var builtinRoles = map[string]string{
	"62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
	"e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
	"7be44c8a-adaf-4e2a-84d6-ab2649e08a13": "Privileged Authentication Administrator",
	"fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
	"29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
	"31392ffb-586c-42d1-9346-e59415a2cc4e": "Exchange Recipient Administrator",
	"194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
	"5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
	"b1be1c3e-b65d-4f19-8427-f6fa0d97feb9": "Conditional Access Administrator",
	"729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
	"c4e39bd9-1100-46d3-8c65-fb160da0071f": "Authentication Administrator",
	"f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
}

// covers lists, per role, the roles that may do everything it does for the
// actions here (Global Administrator covers every role; a Privileged
// Authentication Administrator may reset any user's password, "Who can reset
// passwords" in
// https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/privileged-roles-permissions).
var covers = map[string][]string{
	"User Administrator": {"Privileged Authentication Administrator"},
}

// RoleNeed is the directory role one action needs, read from the catalogue's
// Spec.Role: the leading role name is required (any of AnyOf, or Global
// Administrator), unless the text says the role is needed "only" in some
// case, which makes it advisory (Conditional).
type RoleNeed struct {
	Role        string
	AnyOf       []string
	Conditional bool
	Text        string
}

// ParseRole reads a catalogue Role text such as "User Administrator
// (Privileged Authentication Administrator to reset a privileged
// administrator)" or "Exchange Recipient Administrator (or Exchange
// Administrator)".
func ParseRole(text string) (RoleNeed, bool) {
	text = strings.TrimSpace(text)
	if text == "" {
		return RoleNeed{}, false
	}
	lead := text
	if i := strings.IndexAny(lead, ",("); i >= 0 {
		lead = strings.TrimSpace(lead[:i])
	}
	n := RoleNeed{Role: lead, AnyOf: []string{lead, "Global Administrator"}, Text: text}
	n.AnyOf = append(n.AnyOf, covers[lead]...)
	if _, rest, ok := strings.Cut(text, "(or "); ok {
		if alt, _, ok := strings.Cut(rest, ")"); ok {
			n.AnyOf = append(n.AnyOf, strings.TrimSpace(alt))
		}
	}
	n.Conditional = strings.Contains(text, ", only ")
	return n, true
}

// directoryRoles reads the role names held by the service principal the Graph
// token belongs to.
func directoryRoles(ctx context.Context, cfg Config) ([]string, error) {
	tok, err := cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cfg.GraphScope}})
	if err != nil {
		return nil, fmt.Errorf("get token for %s: %w", cfg.GraphScope, err)
	}
	oid, err := oidClaim(tok.Token)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(cfg.GraphURL, "/")
	if base == "" {
		base = "https://graph.microsoft.com/v1.0"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	next := base + "/roleManagement/directory/roleAssignments?" + url.Values{"$filter": {"principalId eq '" + oid + "'"}}.Encode()
	var names []string
	for i := 0; next != "" && i < 100; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, fmt.Errorf("role assignments: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		res, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("role assignments: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
		res.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("role assignments: %w", err)
		}
		if res.StatusCode != http.StatusOK {
			var ge struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal(body, &ge)
			return nil, fmt.Errorf("role assignments: HTTP %d %s %s (needs RoleManagement.Read.Directory)", res.StatusCode, ge.Error.Code, ge.Error.Message)
		}
		var page struct {
			Value []struct {
				RoleDefinitionID string `json:"roleDefinitionId"`
			} `json:"value"`
			Next string `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("role assignments: %w", err)
		}
		for _, v := range page.Value {
			name := builtinRoles[strings.ToLower(v.RoleDefinitionID)]
			if name == "" {
				name = v.RoleDefinitionID
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		next = page.Next
	}
	return names, nil
}

// oidClaim reads the token's oid (the service principal's object id) without
// verifying the signature; an error never includes the token.
func oidClaim(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("the access token is not a JWT; cannot read its oid")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("the access token's payload is not base64url")
	}
	var c struct {
		Oid string `json:"oid"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Oid == "" {
		return "", errors.New("the access token has no oid claim")
	}
	return c.Oid, nil
}
