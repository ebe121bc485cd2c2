package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
)

// runTLS is `tdf tls init`: a development CA and node certificates.
func runTLS(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(os.Stderr, "usage: tdf tls init --dir DIR --nodes n1,n2,n3 [--hosts 127.0.0.1,localhost]")
		return errUsage
	}
	fs := flag.NewFlagSet("tls init", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write ca.pem, ca-key.pem, <node>.pem and <node>-key.pem into (required)")
	nodes := fs.String("nodes", "n1,n2,n3", "node names, comma-separated: one certificate each")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "IP addresses and DNS names every node certificate is valid for, comma-separated")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	ns, hs := splitList(*nodes), splitList(*hosts)
	if len(hs) == 0 {
		return fmt.Errorf("--hosts: at least one IP address or DNS name is required")
	}
	if err := cluster.WriteDevPKI(*dir, ns, hs); err != nil {
		return err
	}
	fmt.Printf("wrote a development CA and certificates for %v (hosts %v) to %s\n", ns, hs, *dir)
	fmt.Printf("run each node with --ca-file %[1]s/ca.pem --raft-tls-cert %[1]s/<node>.pem --raft-tls-key %[1]s/<node>-key.pem\n", *dir)
	fmt.Printf("(and --tls-cert/--tls-key the same files for an HTTPS API); keep ca-key.pem offline\n")
	return nil
}

// securityOptions are the server's authentication, TLS and limit flags.
type securityOptions struct {
	tokensFile, tokens, joinToken string
	caFile, raftCert, raftKey     string
	insecureNoAuth                bool
}

func (o *securityOptions) bind(fs *flag.FlagSet, cfg *server.Config) {
	ac, lim := &cfg.API, &cfg.HTTPLimits
	fs.StringVar(&o.tokensFile, "tokens-file", "", "extra API tokens: lines \"token scope subject\" (scope admin or user) or a JSON array (besides the replicated ones of tdf token create)")
	fs.BoolVar(&o.insecureNoAuth, "insecure-no-auth", false, "turn API authentication OFF: anyone who reaches the API may do anything (local experiments only)")
	fs.StringVar(&o.tokens, "tokens", "", "API tokens inline, same format, ';' between entries (use TDF_TOKENS, not the flag: flags show in ps)")
	fs.StringVar(&o.joinToken, "join-token", "", "admin token this node uses to register through another member's join endpoint (default: the first admin token configured; prefer TDF_JOIN_TOKEN)")
	fs.Float64Var(&ac.RateLimit, "rate-limit", 50, "requests per second each API token may make to this node (0: unlimited)")
	fs.IntVar(&ac.RateBurst, "rate-burst", 100, "token bucket size of the rate limits")
	fs.Float64Var(&ac.IPRateLimit, "ip-rate-limit", 0, "requests per second each client IP may make while authentication is off (0: unlimited)")
	fs.IntVar(&ac.MaxActiveTasksPerUser, "max-active-tasks-per-user", 0, "tasks one user may run at once; a submission past it is 429 quota_exceeded (0: no bound)")
	fs.IntVar(&ac.MaxActiveTasksPerProject, "max-active-tasks-per-project", 0, "tasks one project may run at once; a submission past it is 429 quota_exceeded (0: no bound)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate: serve the API over HTTPS (with --tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.caFile, "ca-file", "", "cluster CA (PEM): verifies raft peers, and is trusted when forwarding to or joining through an HTTPS member")
	fs.StringVar(&o.raftCert, "raft-tls-cert", "", "PEM node certificate signed by --ca-file: run raft over mutual TLS (with --raft-tls-key)")
	fs.StringVar(&o.raftKey, "raft-tls-key", "", "PEM private key of --raft-tls-cert")
	fs.DurationVar(&lim.ReadHeaderTimeout, "read-header-timeout", server.DefaultHTTPLimits().ReadHeaderTimeout, "a connection that has not sent its request headers in this long is closed (slowloris)")
	fs.DurationVar(&lim.ReadTimeout, "read-timeout", server.DefaultHTTPLimits().ReadTimeout, "longest time to read one whole request (the event stream is exempt)")
	fs.DurationVar(&lim.WriteTimeout, "write-timeout", server.DefaultHTTPLimits().WriteTimeout, "longest time to write one response (the event stream is exempt)")
	fs.IntVar(&lim.MaxHeaderBytes, "max-header-bytes", server.DefaultHTTPLimits().MaxHeaderBytes, "largest request line and headers; larger requests get 431")
}

// apply loads the tokens and certificates into cfg.
func (o *securityOptions) apply(cfg *server.Config) error {
	entries, err := api.LoadTokens(o.tokensFile, o.tokens)
	if err != nil {
		return err
	}
	if cfg.API.Auth, err = api.NewTokens(entries); err != nil {
		return fmt.Errorf("API tokens: %w", err)
	}
	if cfg.InsecureNoAuth = o.insecureNoAuth; o.insecureNoAuth && len(entries) > 0 {
		return fmt.Errorf("--insecure-no-auth turns authentication off, yet API tokens are configured (--tokens-file, --tokens or TDF_TOKENS): drop one or the other")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if (o.raftCert == "") != (o.raftKey == "") {
		return fmt.Errorf("--raft-tls-cert and --raft-tls-key go together")
	}
	if o.raftCert != "" {
		if o.caFile == "" {
			return fmt.Errorf("--raft-tls-cert needs --ca-file, the cluster CA that signs every peer's certificate")
		}
		if cfg.Cluster.RaftTLS, err = cluster.MutualTLSConfig(o.raftCert, o.raftKey, o.caFile); err != nil {
			return err
		}
	}
	// Forwarded requests carry the caller's own Authorization header, so
	// the forwarding client has the CA but no token of its own.
	if cfg.API.Client, err = cluster.NewAPIClient(o.caFile, "", 30*time.Second); err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	join := o.joinToken
	if join == "" {
		join = cfg.API.Auth.JoinToken()
	}
	if cfg.Cluster.HTTPClient, err = cluster.NewAPIClient(o.caFile, join, 10*time.Second); err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	return nil
}
