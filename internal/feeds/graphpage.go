package feeds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	abs "github.com/microsoft/kiota-abstractions-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// page is one Graph collection response, records kept as raw JSON so that the
// event's raw field is exactly what Microsoft sent.
type page struct {
	Value    []json.RawMessage `json:"value"`
	NextLink string            `json:"@odata.nextLink"`
}

var errorMapping = abs.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue}

// getRaw sends ri through the SDK's adapter (auth, retries, telemetry) and decodes
// the collection without binding it to SDK models.
func getRaw(ctx context.Context, client *msgraphsdk.GraphServiceClient, ri *abs.RequestInformation) (page, error) {
	ri.Headers.TryAdd("Accept", "application/json")
	res, err := client.GetAdapter().SendPrimitive(ctx, ri, "[]byte", errorMapping)
	if err != nil {
		return page{}, err
	}
	b, _ := res.([]byte)
	var p page
	if err := json.Unmarshal(b, &p); err != nil {
		return page{}, fmt.Errorf("decode Graph page: %w", err)
	}
	return p, nil
}

// nextRequest builds a GET of an absolute @odata.nextLink.
func nextRequest(link string) (*abs.RequestInformation, error) {
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("bad @odata.nextLink %q", link)
	}
	ri := abs.NewRequestInformation()
	ri.Method = abs.GET
	ri.SetUri(*u)
	return ri, nil
}
