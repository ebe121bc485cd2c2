package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// TLSStreamLayer is a raft.StreamLayer that speaks mutual TLS: every
// connection, in either direction, must present a certificate signed by
// the cluster CA. Build the transport on it with raft.NewNetworkTransport
// (a wrapper such as a fault injector may sit in between).
type TLSStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	config    *tls.Config
}

// NewTLSStreamLayer listens on bind. advertise is the address peers dial
// (nil: the listener's). config must hold this node's certificate, the
// cluster CA in both RootCAs and ClientCAs, and ClientAuth
// RequireAndVerifyClientCert (MutualTLSConfig builds such a config).
func NewTLSStreamLayer(bind string, advertise net.Addr, config *tls.Config) (*TLSStreamLayer, error) {
	if config == nil || len(config.Certificates) == 0 && config.GetCertificate == nil {
		return nil, errors.New("raft TLS: a node certificate is required")
	}
	if config.ClientAuth != tls.RequireAndVerifyClientCert || config.ClientCAs == nil || config.RootCAs == nil {
		return nil, errors.New("raft TLS: the config must verify peers both ways against the cluster CA (see MutualTLSConfig)")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft TLS listen on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if ta, ok := advertise.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft TLS: advertise address %s is not dialable", advertise)
	}
	return &TLSStreamLayer{ln: ln, advertise: advertise, config: config}, nil
}

// Accept waits for the next peer. The handshake happens on the
// connection's first read (in raft's per-connection goroutine), so a slow
// or hostile client cannot hold up other peers; a peer without a valid
// certificate fails it and is dropped.
func (l *TLSStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.config), nil
}

// Close stops listening.
func (l *TLSStreamLayer) Close() error { return l.ln.Close() }

// Addr is the advertised address.
func (l *TLSStreamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer and completes the handshake within timeout, so
// that a peer whose certificate the CA did not sign is an error here.
func (l *TLSStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg := l.config.Clone()
	cfg.ServerName = host
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(address))
}

// NewStreamLayer is the base raft stream layer: mutual TLS when config is
// set, plain TCP otherwise. A wrapper (a fault injector, say) can sit
// between it and raft.NewNetworkTransport.
func NewStreamLayer(bind string, advertise net.Addr, config *tls.Config) (raft.StreamLayer, error) {
	if config != nil {
		return NewTLSStreamLayer(bind, advertise, config)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tcpStreamLayer{Listener: ln, advertise: advertise}, nil
}

// tcpStreamLayer is raft's plain TCP stream layer (raft.TCPStreamLayer
// cannot be built on its own).
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

func (l *tcpStreamLayer) Addr() net.Addr { return l.advertise }

func (l *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// MutualTLSConfig loads a node certificate and the cluster CA into a
// config that presents the certificate and requires and verifies the
// peer's, both as server and as client.
func MutualTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load node certificate %s / %s: %w", certFile, keyFile, err)
	}
	pool, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// LoadCAPool reads PEM CA certificates.
func LoadCAPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// bearerTransport adds a fixed Authorization header to every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// NewAPIClient returns an HTTP client for another member's API: trusting
// the CA in caFile (if any) besides the system roots, and sending token
// (if any) as the bearer token.
func NewAPIClient(caFile, token string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := LoadCAPool(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if token != "" {
		rt = &bearerTransport{token: token, base: tr}
	}
	return &http.Client{Transport: rt, Timeout: timeout}, nil
}
