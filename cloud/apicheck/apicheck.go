// Package apicheck holds HTTP exchanges with a Hetzner Cloud API — tdf's
// requests and the answers it gets — to Hetzner's published API
// description (hcloud.openapi.json, an OpenAPI 3.0 description derived
// from Hetzner's documentation by a third party; MIT licence in
// LICENSE.hcloud-openapi). Nobody on this project wrote that description,
// so it referees the fake cloud and the provider alike.
//
// A Checker wraps an http.RoundTripper: every exchange through it is
// validated with kin-openapi's openapi3filter — path, method, parameters
// and body of the request, status, content type and body of the answer —
// and each deviation is kept for the test to report. A few facts the
// description does not state but hcloud-go relies on (Content-Type
// application/json on every answer, the RateLimit-* headers on a 429) are
// checked too and reported as deviations of their own kind.
package apicheck

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

//go:embed hcloud.openapi.json
var description []byte

// The description's server; requests to any endpoint are matched as if
// sent there.
const describedBase = "https://api.hetzner.cloud/v1"

// Deviation is one request or answer outside the description.
type Deviation struct {
	// Side is "request", "answer" or "route" (no such operation).
	Side   string
	Method string
	Path   string // the path below /v1, with its query
	Status int    // the answer's status (0 for a request)
	Err    string
}

func (d Deviation) String() string {
	return fmt.Sprintf("%s %s %s (status %d): %s", d.Side, d.Method, d.Path, d.Status, d.Err)
}

// Checker validates exchanges against the description. It is safe for
// concurrent use.
type Checker struct {
	doc    *openapi3.T
	router routers.Router

	mu         sync.Mutex
	exchanges  int
	operations map[string]int // "GET /servers/{id} 200" → count
	deviations []Deviation
}

var (
	loadOnce sync.Once
	loaded   *openapi3.T
	loadErr  error
)

// New loads the description (once per process) and returns a Checker.
func New() (*Checker, error) {
	loadOnce.Do(func() {
		l := openapi3.NewLoader()
		loaded, loadErr = l.LoadFromData(normalized(description))
		if loadErr == nil {
			correctSSHKeys(loaded)
			loadErr = loaded.Validate(context.Background(), openapi3.DisableExamplesValidation())
		}
	})
	if loadErr != nil {
		return nil, fmt.Errorf("apicheck: load description: %w", loadErr)
	}
	r, err := legacy.NewRouter(loaded, openapi3.DisableExamplesValidation())
	if err != nil {
		return nil, fmt.Errorf("apicheck: router: %w", err)
	}
	return &Checker{doc: loaded, router: r, operations: map[string]int{}}, nil
}

// Transport returns a RoundTripper that checks each exchange through next
// (http.DefaultTransport if nil) and passes it on unchanged.
func (c *Checker) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{c: c, next: next}
}

type roundTripper struct {
	c    *Checker
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err != nil {
		return resp, err
	}
	rt.c.Check(req, reqBody, resp, respBody)
	return resp, nil
}

// Check validates one exchange. req's URL may point anywhere: only the path
// below /v1 and the query count.
func (c *Checker) Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	sub := req.URL.Path
	if i := strings.Index(sub, "/v1/"); i >= 0 {
		sub = sub[i+3:]
	}
	show := sub
	if req.URL.RawQuery != "" {
		show += "?" + req.URL.RawQuery
	}
	dev := func(side string, status int, err string) Deviation {
		return Deviation{Side: side, Method: req.Method, Path: show, Status: status, Err: err}
	}
	var devs []Deviation
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.exchanges++
		c.deviations = append(c.deviations, devs...)
	}()

	u, _ := url.Parse(describedBase + sub)
	u.RawQuery = req.URL.RawQuery
	r2 := req.Clone(context.Background())
	r2.URL, r2.Host, r2.RequestURI = u, u.Host, ""
	r2.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(r2)
	if err != nil {
		devs = append(devs, dev("route", resp.StatusCode, err.Error()))
		return
	}
	c.mu.Lock()
	c.operations[fmt.Sprintf("%s %s %d", req.Method, route.Path, resp.StatusCode)]++
	c.mu.Unlock()

	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		devs = append(devs, dev("request", 0, oneLine(err)))
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		devs = append(devs, dev("answer", resp.StatusCode, oneLine(err)))
	}
	// What hcloud-go relies on beyond the description (HETZNER.md).
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		devs = append(devs, dev("answer", resp.StatusCode, "Content-Type is "+ct+", not application/json"))
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
			if resp.Header.Get(h) == "" {
				devs = append(devs, dev("answer", resp.StatusCode, "429 without the "+h+" header"))
			}
		}
	}
}

// normalized spells the description's status ranges ("4xx", "5xx") as
// OpenAPI 3.0 does ("4XX"): validators match only the upper-case form, so
// as published every error answer would count as undescribed.
func normalized(b []byte) []byte {
	for _, r := range []string{"1", "2", "3", "4", "5"} {
		b = bytes.ReplaceAll(b, []byte(`"`+r+`xx":`), []byte(`"`+r+`XX":`))
	}
	return b
}

// correctSSHKeys reads a create's ssh_keys as the description's own text
// says ("SSH key IDs (integer) or names (string)") where its schema says
// strings only: hcloud-go, like every Hetzner client, sends ids.
func correctSSHKeys(doc *openapi3.T) {
	req := doc.Components.Schemas["create_server_request"]
	if req == nil || req.Value == nil || req.Value.Properties["ssh_keys"] == nil {
		return
	}
	keys := req.Value.Properties["ssh_keys"].Value
	keys.Items = openapi3.NewSchemaRef("", &openapi3.Schema{OneOf: openapi3.SchemaRefs{
		openapi3.NewSchemaRef("", openapi3.NewInt64Schema()), openapi3.NewSchemaRef("", openapi3.NewStringSchema()),
	}})
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

// Exchanges returns how many exchanges were checked.
func (c *Checker) Exchanges() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exchanges
}

// Deviations returns every deviation found so far.
func (c *Checker) Deviations() []Deviation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.deviations)
}

// Operations returns the described operations seen, as "METHOD /path/{id}
// status" with how often each was seen.
func (c *Checker) Operations() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.operations))
	for k, v := range c.operations {
		out[k] = v
	}
	return out
}

// Covered reports whether an operation ("GET /servers/{id}") was seen with
// any status whose text starts with statusPrefix ("" for any, "2", "412").
func (c *Checker) Covered(op, statusPrefix string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.operations {
		if rest, ok := strings.CutPrefix(k, op+" "); ok && strings.HasPrefix(rest, statusPrefix) {
			return true
		}
	}
	return false
}
