package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ContentTypes are the Management Activity API content types, in the order they
// are polled by default.
var ContentTypes = []string{"Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"}

// APIError is a Management Activity API error response, classified once here.
type APIError struct {
	Status     int    // HTTP status
	Code       string // AF… code ("" when the body had none)
	Message    string
	RequestID  string
	RetryAfter time.Duration // from a Retry-After header, 0 when absent
	Op         string        // "list content", "get blob", "start subscription"
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("management API %s: HTTP %d %s: %s", e.Op, e.Status, code, e.Message)
	if e.RequestID != "" {
		s += " (request-id " + e.RequestID + ")"
	}
	return s
}

// Throttled: AF429 (sent with status 403) or any 429.
func (e *APIError) Throttled() bool {
	return e.Code == "AF429" || e.Status == http.StatusTooManyRequests
}

// Transient: worth retrying as is.
func (e *APIError) Transient() bool {
	return e.Throttled() || e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Code == "AF50000"
}

// NoSubscription: AF20022 (none) or AF20023 (disabled): start it and retry.
func (e *APIError) NoSubscription() bool { return e.Code == "AF20022" || e.Code == "AF20023" }

// Window: the listing window broke a rule (AF20030 older than 7 days, AF20055
// order or length).
func (e *APIError) Window() bool { return e.Code == "AF20030" || e.Code == "AF20055" }

// Expired: the content is older than 7 days (AF20051) and gone for good.
func (e *APIError) Expired() bool { return e.Code == "AF20051" }

func apiErrorOf(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return nil
}

// content is one entry of a content listing.
type content struct {
	ContentType       string    `json:"contentType"`
	ContentID         string    `json:"contentId"`
	ContentURI        string    `json:"contentUri"`
	ContentCreated    time.Time `json:"contentCreated"`
	ContentExpiration time.Time `json:"contentExpiration"`
}

// manageClient speaks the Management Activity API over plain HTTP.
type manageClient struct {
	hc        *http.Client
	root      string // {base}/{tenant}/activity/feed
	publisher string
	budget    *TenantBudget
	attempts  int
	base, max time.Duration
	onRetry   func(err *APIError) // throttles and transient failures, for metrics

	// hc carries the Management API bearer token to whatever it is sent to:
	// safe is hc refusing redirects off the API's host, built once.
	once sync.Once
	safe *http.Client
	host *url.URL // scheme and host of root
	herr error
}

// errForeignHost: a URL or a redirect leaves the Management API's host.
var errForeignHost = errors.New("not the Management API's own host; the token is not sent there")

// sameHost says u is on the API's own scheme and host (port included).
func sameHost(u, api *url.URL) bool {
	return strings.EqualFold(u.Scheme, api.Scheme) && strings.EqualFold(u.Host, api.Host)
}

// client returns hc with redirects confined to the API's host: the bearer
// token goes only to the Management API (content URIs and NextPageUri
// come from the response and are checked in do; a redirect elsewhere is
// refused, not followed). Microsoft documents contentUri and NextPageUri on
// manage.office.com itself:
// https://learn.microsoft.com/en-us/office/office-365-management-api/office-365-management-activity-api-reference#list-available-content
func (c *manageClient) client() (*http.Client, *url.URL, error) {
	c.once.Do(func() {
		api, err := url.Parse(c.root)
		if err != nil || !api.IsAbs() || api.Host == "" {
			c.herr = fmt.Errorf("management API: bad base URL %q", c.root)
			return
		}
		c.host = &url.URL{Scheme: api.Scheme, Host: api.Host}
		hc := *c.hc
		prev := hc.CheckRedirect
		hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if !sameHost(req.URL, c.host) {
				return fmt.Errorf("redirect to %s://%s: %w", req.URL.Scheme, req.URL.Host, errForeignHost)
			}
			if prev != nil {
				return prev(req, via)
			}
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return nil
		}
		c.safe = &hc
	})
	return c.safe, c.host, c.herr
}

// withPublisher adds PublisherIdentifier to u unless it is already there.
func (c *manageClient) withPublisher(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() {
		return "", fmt.Errorf("management API: bad URL %q", u)
	}
	q := p.Query()
	for k := range q {
		if strings.EqualFold(k, "PublisherIdentifier") {
			return u, nil
		}
	}
	if p.RawQuery != "" {
		p.RawQuery += "&"
	}
	p.RawQuery += "PublisherIdentifier=" + url.QueryEscape(c.publisher)
	return p.String(), nil
}

// do sends one request within the budget, retrying throttles, 5xx and dropped
// connections with bounded back-off. On success the caller owns resp.Body.
func (c *manageClient) do(ctx context.Context, op, method, u string) (*http.Response, error) {
	u, err := c.withPublisher(u)
	if err != nil {
		return nil, err
	}
	hc, api, err := c.client()
	if err != nil {
		return nil, err
	}
	if p, err := url.Parse(u); err != nil || !sameHost(p, api) {
		// A listing that names another host (tampered, or a bug) is not
		// followed: the request would carry the token.
		where := "an unreadable URL"
		if err == nil {
			where = p.Scheme + "://" + p.Host
		}
		return nil, &APIError{Op: op, Code: "ForeignHost", Message: where + " is " + errForeignHost.Error()}
	}
	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			var ra time.Duration
			if ae := apiErrorOf(last); ae != nil {
				ra = ae.RetryAfter
			}
			if err := sleepCtx(ctx, backoff(attempt-1, c.base, c.max, ra)); err != nil {
				return nil, fmt.Errorf("management API %s: %w (after %w)", op, err, last)
			}
		}
		if err := c.budget.Wait(ctx, PriorityPoll); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, fmt.Errorf("management API %s: %w", op, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("management API %s: %w", op, ctx.Err())
			}
			if errors.Is(err, errForeignHost) {
				return nil, &APIError{Op: op, Code: "ForeignHost", Message: err.Error()}
			}
			last = fmt.Errorf("management API %s: %w", op, err)
			if c.onRetry != nil {
				c.onRetry(nil)
			}
			continue
		}
		if resp.StatusCode < 300 {
			return resp, nil
		}
		ae := readAPIError(resp, op)
		if !ae.Transient() {
			return nil, ae
		}
		if ae.Throttled() {
			// The budget is per tenant: hold every caller back, not just this one.
			c.budget.Throttled(backoff(attempt, c.base, c.max, ae.RetryAfter))
		}
		if c.onRetry != nil {
			c.onRetry(ae)
		}
		last = ae
	}
	return nil, fmt.Errorf("management API %s: giving up after %d attempts: %w", op, c.attempts, last)
}

func readAPIError(resp *http.Response, op string) *APIError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ae := &APIError{Status: resp.StatusCode, Op: op, RequestID: resp.Header.Get("request-id")}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Message string `json:"Message"`
	}
	if json.Unmarshal(b, &body) == nil {
		ae.Code, ae.Message = body.Error.Code, body.Error.Message
		if ae.Message == "" {
			ae.Message = body.Message
		}
	}
	if ae.Message == "" {
		ae.Message = strings.TrimSpace(string(b))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200]
		}
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
			ae.RetryAfter = time.Duration(n * float64(time.Second))
		} else if t, err := http.ParseTime(s); err == nil {
			ae.RetryAfter = time.Until(t)
		}
	}
	return ae
}

// start starts the subscription of ct; "already enabled" (AF20024) is success.
func (c *manageClient) start(ctx context.Context, ct string) error {
	resp, err := c.do(ctx, "start subscription", http.MethodPost, c.root+"/subscriptions/start?contentType="+url.QueryEscape(ct))
	if ae := apiErrorOf(err); ae != nil && ae.Code == "AF20024" {
		return nil
	}
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return nil
}

// manageTime is the documented YYYY-MM-DDTHH:MM:SS (UTC).
func manageTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// list returns every content entry of ct created in [from, to), following
// NextPageUri. onPage is called for each page fetched.
func (c *manageClient) list(ctx context.Context, ct string, from, to time.Time, onPage func()) ([]content, error) {
	u := c.root + "/subscriptions/content?contentType=" + url.QueryEscape(ct) +
		"&startTime=" + manageTime(from) + "&endTime=" + manageTime(to)
	var out []content
	for pages := 0; u != ""; pages++ {
		if pages > 100000 {
			return nil, errors.New("management API list content: too many pages")
		}
		resp, err := c.do(ctx, "list content", http.MethodGet, u)
		if err != nil {
			return nil, err
		}
		var page []content
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("management API list content: decode: %w", err)
		}
		if onPage != nil {
			onPage()
		}
		out = append(out, page...)
		u = resp.Header.Get("NextPageUri")
	}
	return out, nil
}
