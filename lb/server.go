package lb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is a Balancer listening on an address.
type Server struct {
	*Balancer
	// URL is the balancer's base URL, http://<listen address>: the
	// cluster's control-plane URL.
	URL    string
	http   *http.Server
	cancel context.CancelFunc
	done   chan error
}

// Listen starts a Balancer on addr ("127.0.0.1:0" picks a port) with its
// health checks running. Close stops both.
func Listen(addr string, opts Options) (*Server, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lb: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Balancer: b, URL: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1),
		// No write timeout: event streams last; nodes bound their requests.
		http: &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}}
	go b.Run(ctx)
	go func() { s.done <- s.http.Serve(ln) }()
	b.log.Info("load balancer listening", "url", s.URL, "backends", opts.Backends)
	return s, nil
}

// Done reports the HTTP server's exit.
func (s *Server) Done() <-chan error { return s.done }

// Close stops serving and checking; open event streams are cut.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.http.Close()
	}
	s.tr.CloseIdleConnections()
	return err
}
