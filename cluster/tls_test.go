package cluster_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
)

// freeAddrs returns n distinct free 127.0.0.1 addresses (held open
// together, then released for the caller to bind).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// mtlsConfig is what MutualTLSConfig builds, from PEM in memory.
func mtlsConfig(t *testing.T, ca *cluster.DevCA, name string) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for f, b := range map[string][]byte{caFile: ca.CertPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := cluster.MutualTLSConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startTLSCluster runs three in-process nodes whose raft traffic goes over
// real TCP with mutual TLS on 127.0.0.1.
func startTLSCluster(t *testing.T, ca *cluster.DevCA) (*server.TestCluster, map[string]string) {
	addrs := freeAddrs(t, 3)
	byID := map[string]string{}
	var voters []raft.Server
	for i, a := range addrs {
		id := fmt.Sprintf("n%d", i+1)
		byID[id] = a
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(a)})
	}
	tlsByID := map[string]*tls.Config{}
	for id := range byID {
		tlsByID[id] = mtlsConfig(t, ca, id)
	}
	c := server.NewTestCluster(t, server.TestOptions{NoWait: true, Cluster: func(cc *cluster.Config) {
		cc.Transport = nil
		cc.RaftAddr = byID[cc.NodeID]
		cc.RaftTLS = tlsByID[cc.NodeID]
		cc.Bootstrap = voters
	}})
	for _, n := range c.Nodes {
		n.Addr = raft.ServerAddress(byID[n.ID]) // the helper's waits compare it
	}
	c.Leader()
	c.WaitMembers()
	return c, byID
}

// The cluster forms and replicates over mutual TLS; a peer whose
// certificate another CA signed is refused both ways: its RPCs to members
// fail (the members cannot verify it), and members will not talk to it
// (they cannot verify its server certificate). Its vote request with a
// higher term never reaches raft: the leader keeps its term.
func TestMutualTLSRaft(t *testing.T) {
	ca, err := cluster.NewDevCA("test cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	c, addrs := startTLSCluster(t, ca)
	leader := c.Leader()
	r := c.Do(leader, http.MethodPost, "/v1/tasks", []byte(`{"project_id":"p1","user_id":"u1","prompt":"over TLS","repository":"github.com/acme/app"}`), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	idx, hash := c.WaitConverged()
	t.Logf("three nodes converged over mutual TLS at index %d (hash %s)", idx, hash)

	other, err := cluster.NewDevCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	// The worst case: the rogue trusts the cluster CA (its certificate is
	// public), so its side of the handshake succeeds; only its own
	// certificate, signed by another CA, is wrong.
	rogueCfg := mtlsConfig(t, other, "rogue")
	rogueCfg.RootCAs = x509.NewCertPool()
	rogueCfg.RootCAs.AddCert(ca.Cert)
	// Present the certificate even though the member asks for the cluster
	// CA's (Go's client would otherwise send none).
	rogueCert := rogueCfg.Certificates[0]
	rogueCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogueCert, nil }
	rogueStream, err := cluster.NewTLSStreamLayer("127.0.0.1:0", nil, rogueCfg)
	if err != nil {
		t.Fatal(err)
	}
	rogue := raft.NewNetworkTransport(rogueStream, 1, 5*time.Second, io.Discard)
	defer rogue.Close()
	term := leader.Node.Raft().CurrentTerm()
	for id, a := range addrs {
		var resp raft.RequestVoteResponse
		err := rogue.RequestVote(raft.ServerID(id), raft.ServerAddress(a), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("rogue"), Addr: []byte(rogueStream.Addr().String())},
			Term:      term + 100, LastLogIndex: 1 << 40, LastLogTerm: term + 100,
		}, &resp)
		if err == nil {
			t.Fatalf("%s answered the rogue's vote request: %+v", id, resp)
		}
		if !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("%s: rogue's vote request failed with %v, want the member's certificate refusal", id, err)
		}
		t.Logf("%s refused the rogue: %v", id, err)
		var ae raft.AppendEntriesResponse
		if err := rogue.AppendEntries(raft.ServerID(id), raft.ServerAddress(a), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("rogue"), Addr: []byte(rogueStream.Addr().String())}, Term: term + 100,
		}, &ae); err == nil {
			t.Fatalf("%s accepted the rogue's append: %+v", id, ae)
		}
	}
	// A member dialing the rogue does not accept its certificate.
	member, err := cluster.NewTLSStreamLayer("127.0.0.1:0", nil, mtlsConfig(t, ca, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	go func() {
		// The rogue's side must read for the handshake to run.
		if conn, err := rogueStream.Accept(); err == nil {
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	_, err = member.Dial(raft.ServerAddress(rogueStream.Addr().String()), 5*time.Second)
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Fatalf("member dialing the rogue = %v, want an unknown-authority error", err)
	}
	if got := c.Leader(); got.ID != leader.ID || got.Node.Raft().CurrentTerm() != term {
		t.Fatalf("leader %s term %d after the rogue, was %s term %d", got.ID, got.Node.Raft().CurrentTerm(), leader.ID, term)
	}
}

// A stream layer without mutual verification is refused at construction.
func TestTLSStreamLayerNeedsMutualConfig(t *testing.T) {
	if _, err := cluster.NewTLSStreamLayer("127.0.0.1:0", nil, &tls.Config{}); err == nil {
		t.Fatal("NewTLSStreamLayer accepted a config without a certificate")
	}
	ca, _ := cluster.NewDevCA("ca")
	cfg := mtlsConfig(t, ca, "n1")
	cfg.ClientAuth = tls.RequestClientCert
	if _, err := cluster.NewTLSStreamLayer("127.0.0.1:0", nil, cfg); err == nil || !strings.Contains(err.Error(), "both ways") {
		t.Fatalf("NewTLSStreamLayer without client verification = %v", err)
	}
}

func TestWriteDevPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := cluster.WriteDevPKI(dir, []string{"n1", "n2"}, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if _, err := cluster.MutualTLSConfig(filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WriteDevPKI(dir, []string{"n3"}, []string{"127.0.0.1"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second WriteDevPKI = %v, want a refusal to overwrite the CA", err)
	}
	if err := cluster.WriteDevPKI(t.TempDir(), []string{"../x"}, []string{"127.0.0.1"}); err == nil {
		t.Fatal("a node name with a path was accepted")
	}
}

// NewStreamLayer gives TCP without a config and mutual TLS with one; both
// carry bytes between two layers.
func TestNewStreamLayerRoundTrip(t *testing.T) {
	ca, err := cluster.NewDevCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []*tls.Config{nil, mtlsConfig(t, ca, "n1")} {
		a, err := cluster.NewStreamLayer("127.0.0.1:0", nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := cluster.NewStreamLayer("127.0.0.1:0", nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			conn, err := b.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer conn.Close()
			buf := make([]byte, 5)
			_, err = io.ReadFull(conn, buf)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(buf)
		}()
		conn, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
		if err != nil {
			t.Fatalf("tls %v: dial: %v", cfg != nil, err)
		}
		if _, err := conn.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != "hello" {
				t.Fatalf("tls %v: got %q", cfg != nil, s)
			}
		case <-time.After(server.TestWait):
			t.Fatal("nothing arrived")
		}
		conn.Close()
		a.Close()
		b.Close()
	}
}
