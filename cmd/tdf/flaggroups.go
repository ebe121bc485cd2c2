package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// serverFlagGroups sorts tdf server's flags into sections for its help:
// the first group whose prefix or name matches takes a flag.
var serverFlagGroups = []struct {
	title string
	match []string // a flag name, or a prefix ending in "-"
}{
	{"Node and storage", []string{"node-id", "cluster-name", "data-dir", "disk-", "keyring-file", "log-", "fault-injection", "error-retention", "task-retention", "archive-dir"}},
	{"Raft and membership", []string{"raft-", "bootstrap", "join", "heartbeat-timeout", "election-timeout", "leader-lease-timeout", "commit-timeout",
		"max-append-entries", "snapshot-", "trailing-logs", "apply-timeout", "min-quorum", "dead-server-cleanup", "member-"}},
	{"HTTP API, TLS and limits", []string{"http-addr", "advertise-http", "tls-", "ca-file", "read-", "write-timeout", "max-header-bytes", "max-body-bytes",
		"request-timeout", "hold-timeout", "max-stale", "callback-hold-timeout", "rate-", "ip-rate-limit", "event-", "events-"}},
	{"Authentication", []string{"tokens", "tokens-file", "insecure-no-auth", "join-token", "key-rotation"}},
	{"Tasks and steps", []string{"workers", "calls", "step-", "retry-", "sweep-interval", "stuck-", "claim-timeout", "max-execution-time",
		"session-idle-timeout", "max-active-tasks-", "run-", "reconcile-"}},
	{"Cloud (Hetzner)", []string{"cloud-", "hetzner-", "vm-sizes", "fallback-locations", "agent-source-ranges", "ssh-", "private-network",
		"agent-over-private-network", "server-image"}},
	{"Nodes and agents", []string{"agent-", "node-", "max-node-", "max-nodes-per-user", "max-workspaces-per-node", "heartbeat-stale", "control-plane-url",
		"provisioning-", "workspace-ready-timeout", "cpu-threshold", "memory-threshold"}},
}

// groupOf is the title of the group a server flag belongs to ("Other"
// for one no group names).
func groupOf(name string) string {
	for _, g := range serverFlagGroups {
		for _, m := range g.match {
			if name == m || (strings.HasSuffix(m, "-") && strings.HasPrefix(name, m)) {
				return g.title
			}
		}
	}
	return "Other"
}

// printGroupedDefaults prints fs's flags as PrintDefaults does, in the
// sections of serverFlagGroups.
func printGroupedDefaults(w io.Writer, fs *flag.FlagSet) {
	sections := map[string]*flag.FlagSet{}
	fs.VisitAll(func(f *flag.Flag) {
		title := groupOf(f.Name)
		sec := sections[title]
		if sec == nil {
			sec = flag.NewFlagSet(title, flag.ContinueOnError)
			sections[title] = sec
		}
		sec.Var(f.Value, f.Name, f.Usage)
		sec.Lookup(f.Name).DefValue = f.DefValue
	})
	titles := make([]string, 0, len(serverFlagGroups)+1)
	for _, g := range serverFlagGroups {
		titles = append(titles, g.title)
	}
	for _, title := range append(titles, "Other") {
		sec := sections[title]
		if sec == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		sec.SetOutput(w)
		sec.PrintDefaults()
	}
}
