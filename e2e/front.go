package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/lb"
)

// Front is the one URL agents are given for a test cluster: tdf's own
// load balancer (lb), wrapped to record every request with the answer it
// got, so that a test can count what the control plane refused.
type Front struct {
	URL string
	tb  testing.TB
	ctx context.Context

	mu  sync.Mutex // guards bal and log
	bal *lb.Balancer
	log []FrontRecord
}

// FrontRecord is one request through the front.
type FrontRecord struct {
	Method, Path string
	Status       int
	At           time.Time
}

// StartFront serves on a free loopback port until the test ends; it
// answers 503 until SetBackends gives it the nodes (their addresses are
// chosen when the cluster starts, after the front's URL is given to it).
func StartFront(tb testing.TB) *Front {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &Front{tb: tb, ctx: ctx}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("front: %v", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { cancel(); _ = srv.Close() })
	f.URL = "http://" + ln.Addr().String()
	return f
}

// SetBackends puts the nodes' API base URLs behind the front.
func (f *Front) SetBackends(urls ...string) error {
	bal, err := lb.New(lb.Options{Backends: urls, CheckInterval: 200 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("front: %w", err)
	}
	go bal.Run(f.ctx)
	f.mu.Lock()
	f.bal = bal
	f.mu.Unlock()
	return nil
}

// ServeHTTP hands the request to the balancer and records the answer.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	bal := f.bal
	f.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w}
	if bal == nil {
		http.Error(rec, "front: no backends yet", http.StatusServiceUnavailable)
	} else {
		bal.ServeHTTP(rec, r)
	}
	f.mu.Lock()
	f.log = append(f.log, FrontRecord{Method: r.Method, Path: r.URL.Path, Status: rec.status, At: time.Now()})
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
