package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// The Graph feeds whose API needs a Microsoft Entra ID licence, and what the
// feed does without it (internal/feeds parks it). Microsoft's sources: the
// sign-in log needs P1 or P2 (https://learn.microsoft.com/graph/api/signin-list);
// "You must have a Microsoft Entra ID P1 or P2 license to use the risk
// detection API" (https://learn.microsoft.com/graph/api/riskdetection-list);
// "Using the riskyUsers API requires a Microsoft Entra ID P2 license"
// (https://learn.microsoft.com/graph/api/riskyuser-list). Without it Graph
// answers 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant ("Tenant
// is not a B2C tenant and doesn't have premium license").
var licencedFeeds = []struct{ feed, path, why string }{
	{"signin", "auditLogs/signIns?$top=1", "tenant has no Entra ID P1 or P2 licence: the sign-in log feed is parked"},
	{"risk_detection", "identityProtection/riskDetections?$top=1", "tenant has no Entra ID P2 licence: Identity Protection feeds parked"},
	{"risky_user", "identityProtection/riskyUsers?$top=1", "tenant has no Entra ID P2 licence: Identity Protection feeds parked"},
}

const codeNoPremium = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"

// probeLicences asks each licensed feed's endpoint for one record, for the
// feed rows whose permissions are granted, and fails the row that the tenant
// is not licensed for, saying why. Any other answer leaves the row as it is:
// permissions are judged from the token, and a network problem is not a
// licence problem.
func (r *Report) probeLicences(ctx context.Context, cfg Config) {
	var tok string
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Kind != KindFeed || !row.OK {
			continue
		}
		for _, lf := range licencedFeeds {
			if lf.feed != row.Name {
				continue
			}
			if tok == "" {
				t, err := cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cfg.GraphScope}})
				if err != nil {
					return
				}
				tok = t.Token
			}
			if code, msg := probeGraph(ctx, cfg, tok, lf.path); code == codeNoPremium {
				row.OK, row.Problem = false, fmt.Sprintf("%s (GET %s answered 403 %s: %s)", lf.why, strings.SplitN(lf.path, "?", 2)[0], code, msg)
			}
		}
	}
}

// probeGraph GETs path and returns the Graph error code and message of a
// refusal ("" when it answered or could not be asked).
func probeGraph(ctx context.Context, cfg Config, token, path string) (code, msg string) {
	base := strings.TrimRight(cfg.GraphURL, "/")
	if base == "" {
		base = "https://graph.microsoft.com/v1.0"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+path, nil)
	if err != nil {
		return "", ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := hc.Do(req)
	if err != nil {
		return "", ""
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 400 {
		return "", ""
	}
	var ge struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(body, &ge)
	return ge.Error.Code, ge.Error.Message
}
