package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/tdf-project/tdf/api"
)

// nodeActionHelp says what each operator action does.
var nodeActionHelp = map[string]string{
	"cordon":   "the node takes no new task (it stays and keeps its running tasks)",
	"uncordon": "the node takes tasks again",
	"drain":    "cordon, and destroy the node once its last task is cleaned up",
	"destroy":  "destroy the node now; tasks still running on it fail",
}

// runNode is tdf node cordon|uncordon|drain|destroy ID (admin token).
func runNode(ctx context.Context, args []string) error {
	if len(args) == 0 || nodeActionHelp[args[0]] == "" {
		fmt.Fprint(os.Stderr, "usage: tdf node cordon|uncordon|drain|destroy ID [--json]\n")
		for _, a := range []string{"cordon", "uncordon", "drain", "destroy"} {
			fmt.Fprintf(os.Stderr, "  %-9s %s\n", a, nodeActionHelp[a])
		}
		return errUsage
	}
	action := args[0]
	fs := flag.NewFlagSet("node "+action, flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	c, err := parseClient(fs, args[1:], addr)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("tdf node %s needs exactly one node id, got %d arguments", action, fs.NArg())
	}
	var n api.NodeView
	if err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(fs.Arg(0))+"/"+action, struct{}{}, nil, &n); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(n)
	}
	state := string(n.Status)
	if n.Cordoned {
		state += ", cordoned (" + n.CordonReason + ")"
	}
	fmt.Printf("node %s: %s\n", n.ID, strings.TrimSpace(state))
	return nil
}
