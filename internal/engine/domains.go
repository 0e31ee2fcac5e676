package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
)

// readVerifiedDomains lists the tenant's verified domains (GET /domains,
// Domain.Read.All), lower-cased and sorted.
func readVerifiedDomains(ctx context.Context, graph *msgraphsdk.GraphServiceClient) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := graph.Domains().Get(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("engine: list domains: %w", err)
	}
	var out []string
	for _, d := range resp.GetValue() {
		if id := d.GetId(); id != nil && d.GetIsVerified() != nil && *d.GetIsVerified() {
			out = append(out, strings.ToLower(*id))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("engine: the tenant reports no verified domain")
	}
	slices.Sort(out)
	return out, nil
}
