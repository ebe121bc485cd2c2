package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Front is the one URL agents are given for a test cluster: a reverse
// proxy in the test process that hands each request to the first backend
// that accepts the connection (a dead node is skipped, as a load balancer
// would) and records every request with the answer it got, so that a
// test can count what the control plane refused.
type Front struct {
	URL      string
	backends []*url.URL
	mu       sync.Mutex // guards backends and log
	log      []FrontRecord
}

// FrontRecord is one request through the front.
type FrontRecord struct {
	Method, Path string
	Status       int
	Backend      string
	At           time.Time
}

// StartFront serves on a free loopback port until the test ends; it
// answers 502 until SetBackends gives it the nodes (their addresses are
// chosen when the cluster starts, after the front's URL is given to it).
func StartFront(tb testing.TB) *Front {
	tb.Helper()
	f := &Front{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("front: %v", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	f.URL = "http://" + ln.Addr().String()
	return f
}

// SetBackends sets the base URLs requests go to, the first first.
func (f *Front) SetBackends(urls ...string) error {
	var bs []*url.URL
	for _, b := range urls {
		u, err := url.Parse(b)
		if err != nil {
			return fmt.Errorf("front: backend %q: %w", b, err)
		}
		bs = append(bs, u)
	}
	f.mu.Lock()
	f.backends = bs
	f.mu.Unlock()
	return nil
}

// frontTransport fails fast on a dead backend so the next one is tried.
var frontTransport = &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	ResponseHeaderTimeout: 60 * time.Second,
	MaxIdleConnsPerHost:   32,
}

// ServeHTTP buffers the body (callbacks are small), then tries each
// backend in turn until one accepts the connection. A request whose
// connection was accepted is never sent again: it may have taken effect.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	f.mu.Lock()
	backends := f.backends
	f.mu.Unlock()
	tried := []string{"none"}
	for _, b := range backends {
		var dialErr error
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(b) },
			Transport: frontTransport,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				var op *net.OpError
				if errors.As(err, &op) && op.Op == "dial" {
					dialErr = err
					return
				}
				w.WriteHeader(http.StatusBadGateway)
			},
		}
		r.Body = newBody(body)
		rp.ServeHTTP(rec, r)
		tried = append(tried, b.Host)
		if dialErr == nil {
			break
		}
	}
	if rec.status == 0 {
		http.Error(rec, fmt.Sprintf("front: no backend accepted the connection (%s)", strings.Join(tried, ", ")), http.StatusBadGateway)
	}
	f.mu.Lock()
	f.log = append(f.log, FrontRecord{Method: r.Method, Path: r.URL.Path, Status: rec.status, Backend: tried[len(tried)-1], At: time.Now()})
	f.mu.Unlock()
}

// Records returns every request so far.
func (f *Front) Records() []FrontRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	return io.ReadAll(io.LimitReader(r.Body, 8<<20))
}

func newBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
