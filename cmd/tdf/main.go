// Command tdf is the one binary of the tdf cluster: the server, a local
// development cluster, and the client commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tdf-project/tdf/internal/buildinfo"
)

const usage = `tdf runs long task pipelines durably on a Raft cluster.

Usage:
  tdf server [flags]          run one cluster node (tdf server --help)
  tdf dev [flags]             run a local three-node cluster with the simulated cloud
  tdf fakecloud [flags]       serve the simulated cloud: a fake Hetzner API and VM agents
  tdf lb --backends URL,...   a load balancer in front of the nodes: the agents' one control-plane URL
  tdf fake-acp                a fake coding agent (ACP over stdio) for the real VM agent in tests
  tdf task submit|get|list|cancel|rerun|prompt|watch|idle-reset|messages ...
  tdf credential set|list|delete ...   git tokens and agent keys, sealed (docs/security.md)
  tdf token create|list|revoke|save ... API tokens: admin, or a user's (docs/security.md)
  tdf keyring init --out FILE  a new cluster keyring, copied to every node
  tdf cluster status|members|join|remove|transfer-leadership
  tdf snapshot save --out FILE | restore --in FILE
  tdf errors [--task ID] [--node ID] [--kind K]
  tdf nodes [--status S] [--user U] | tdf nodes ID   (one node and its event log)
  tdf node cordon|uncordon|drain|destroy ID   an operator's action on a node (admin)
  tdf import [--dry-run] FILE  import the old system's in-flight tasks (docs/import.md)
  tdf tls init --dir DIR --nodes n1,n2,n3 [--hosts 127.0.0.1,localhost]
  tdf healthcheck [--url URL]  exit 0 if the URL answers 2xx (container probes)
  tdf completion bash|zsh|fish
  tdf bench [--only raft,e2e,wheel,fsm,api] [--smoke]   measure (BENCHMARKS.md)
  tdf version [--json]          version, commit and Go version of this binary

Client commands talk to any node: --addr http://127.0.0.1:8001 or TDF_ADDR;
--token or TDF_TOKEN is the API token (else the one tdf token save or tdf dev saved
for that URL), --ca-file or TDF_CA_FILE the CA of an https node.
`

// errUsage marks an error already explained to the user (exit code 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	code := exitCode(err)
	if code != exitOK && !errors.Is(err, errUsage) {
		fmt.Fprintln(os.Stderr, "tdf:", err)
	}
	os.Exit(code)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errUsage
	}
	if groupHelp(os.Stdout, args) {
		return errHelp
	}
	switch args[0] {
	case "server":
		return runServer(ctx, args[1:])
	case "dev":
		return runDev(ctx, args[1:])
	case "fakecloud":
		return runFakecloud(ctx, args[1:])
	case "fake-acp":
		return runFakeACP(ctx, args[1:])
	case "lb":
		return runLB(ctx, args[1:])
	case "task":
		return runTask(ctx, args[1:])
	case "credential":
		return runCredential(ctx, args[1:])
	case "token":
		return runToken(ctx, args[1:])
	case "keyring":
		return runKeyring(ctx, args[1:])
	case "cluster":
		return runCluster(ctx, args[1:])
	case "snapshot":
		return runSnapshot(ctx, args[1:])
	case "errors":
		return runErrors(ctx, args[1:])
	case "nodes":
		return runNodes(ctx, args[1:])
	case "node":
		return runNode(ctx, args[1:])
	case "import":
		return runImport(ctx, args[1:])
	case "tls":
		return runTLS(ctx, args[1:])
	case "healthcheck":
		return runHealthcheck(ctx, args[1:])
	case "completion":
		return runCompletion(args[1:])
	case "bench":
		return runBench(ctx, args[1:])
	case "version":
		return runVersion(args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage + exitCodesHelp)
		return nil
	}
	fmt.Fprintf(os.Stderr, "tdf: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// version names this build to the cloud API (its User-Agent).
var version = buildinfo.Read().Version
