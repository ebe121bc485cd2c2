package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// AdminTokenFile is the file, in the data directory of the node that first
// led a new cluster, holding the cluster's bootstrap admin token (mode
// 0600). Nomad, Consul and Vault bootstrap a management token the same
// way: the API is never open, not even on the first start.
const AdminTokenFile = "admin-token"

// bootstrapTokenID is the id of the bootstrap token's record.
const bootstrapTokenID = "bootstrap"

// ReadAdminToken reads the bootstrap admin token from a data directory.
func ReadAdminToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", filepath.Join(dataDir, AdminTokenFile))
	}
	return tok, nil
}

// bootstrapAdmin returns the leader hook that gives a new cluster its
// first admin token, once. The token is written to the data directory
// before it is committed: if the leader dies in between, the next leader
// that finds no bootstrap token in the state commits the one in its own
// file, or makes a new one; a file whose token another leader beat to the
// commit is removed.
func bootstrapAdmin(f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), dataDir string, log hclog.Logger) func(context.Context, uint64) {
	return func(ctx context.Context, _ uint64) {
		for !f.HasBootstrapToken() {
			err := commitBootstrapToken(ctx, f, apply, dataDir, log)
			if err == nil || ctx.Err() != nil {
				break
			}
			log.Warn("cannot bootstrap the admin token; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		removeStaleTokenFile(f, dataDir, log)
	}
}

// removeStaleTokenFile removes this node's admin-token file if its token is
// not the cluster's bootstrap token (a leader that wrote it lost the
// commit to another), so that no operator reads a dead token from it.
func removeStaleTokenFile(f *fsm.FSM, dataDir string, log hclog.Logger) {
	tok, err := ReadAdminToken(dataDir)
	if err != nil {
		return
	}
	h := fsm.HashAPIToken(tok)
	for _, t := range f.APITokens() {
		if t.Bootstrap && t.Hash != h {
			path := filepath.Join(dataDir, AdminTokenFile)
			if os.Remove(path) == nil {
				log.Warn("removed an admin token file whose token is not the cluster's (another leader's bootstrap token was committed)", "file", path)
			}
		}
	}
}

func commitBootstrapToken(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), dataDir string, log hclog.Logger) error {
	path := filepath.Join(dataDir, AdminTokenFile)
	tok, err := ReadAdminToken(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		if tok, _, err = api.NewAPIToken(); err != nil {
			return err
		}
		err = writeSecretFile(path, tok)
	}
	if err != nil {
		return err
	}
	rec := fsm.APIToken{ID: bootstrapTokenID, Hash: fsm.HashAPIToken(tok), Scope: fsm.TokenScopeAdmin, Subject: "admin",
		CreatedAt: time.Now().UTC().Round(0), Bootstrap: true}
	res, err := apply(ctx, fsm.CreateAPIToken{Token: rec})
	if err != nil {
		return err
	}
	if errors.Is(res.Err, fsm.ErrExists) {
		// Another leader bootstrapped first; this file's token is no one's.
		_ = os.Remove(path)
		return nil
	}
	if res.Err != nil {
		return res.Err
	}
	log.Info("API authentication is on: the bootstrap admin token is in "+path+" (the CLI and tdf dev read it from there; keep it secret)", "file", path)
	return nil
}

// writeSecretFile writes a new file readable by its owner only; it never
// replaces one.
func writeSecretFile(path, content string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(content + "\n"); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// memberAuth adds a member token (tokens.MemberToken) to this node's calls
// to other members' join endpoint that carry no token of their own (an
// operator's --join-token wins): a bootstrapped member registers its API
// address without an admin token.
type memberAuth struct {
	node   string
	issuer *tokens.Issuer
	base   http.RoundTripper
}

func (m *memberAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		if tok, err := m.issuer.MemberToken(m.node); err == nil {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	return m.base.RoundTrip(r)
}

// withMemberAuth wraps a member-API client (nil: a default one) with
// memberAuth.
func withMemberAuth(c *http.Client, node string, issuer *tokens.Issuer) *http.Client {
	out := &http.Client{Timeout: 10 * time.Second}
	if c != nil {
		*out = *c
	}
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = &memberAuth{node: node, issuer: issuer, base: base}
	return out
}
