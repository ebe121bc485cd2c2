package main

import (
	"fmt"
	"io"
	"strings"
)

// commandArgs documents each command's positional arguments: the synopsis
// and a sentence on each.
var commandArgs = map[string][2]string{
	"task get":        {"ID", "ID is the task's id."},
	"task cancel":     {"ID", "ID is the task's id; a task that already ended is left as it is."},
	"task watch":      {"ID", "ID is the task's id; follows it until it ends (exit 1 if it failed or was cancelled)."},
	"task idle-reset": {"ID", "ID is the id of a task awaiting a follow-up; restarts its idle timer."},
	"task messages":   {"ID", "ID is the task's id; prints its chat messages."},
	"task rerun":      {"ID", "ID is the id of a failed or cancelled task; queues it again from the start."},
	"task prompt":     {"ID", "ID is the id of a task awaiting a follow-up; sends it --prompt."},
	"task submit":     {"", "Submits a task; --wait follows it until it ends (exit 1 if it failed or was cancelled)."},
	"task list":       {"", "Lists tasks, newest first (--order asc for oldest first)."},
	"cluster remove":  {"ID", "ID is the member (node id) to remove from the raft configuration."},
	"nodes":           {"[ID]", "With ID, one node and its event log; without, the node list."},
	"import":          {"FILE", "FILE is a JSON-lines export of the old system (docs/import.md)."},
	"node cordon":     {"ID", "ID is the node's id; it takes no new task, its tasks go on."},
	"node uncordon":   {"ID", "ID is the node's id; it takes tasks again."},
	"node drain":      {"ID", "ID is the node's id; it takes no new task and is destroyed once its last task ended."},
	"node destroy":    {"ID", "ID is the node's id; it is destroyed now and tasks still on it fail."},
	"token revoke":    {"ID", "ID is the token's id (tdf token list shows it)."},
}

// groupUsage is the help of each command that has subcommands.
var groupUsage = map[string]string{
	"task": `Usage: tdf task SUBCOMMAND [flags] [ID]

Subcommands:
  submit      submit a task (--project, --user, --repo, --prompt required; --wait follows it)
  get ID      one task, its history and steps
  list        tasks, newest first; filters --status, --user, --project, --since, --until
  cancel ID   cancel a task
  rerun ID    queue a failed or cancelled task again from the start
  prompt ID   send a follow-up prompt to a task awaiting one (--prompt)
  watch ID    follow a task until it ends
  idle-reset ID  restart the idle timer of a task awaiting a follow-up
  messages ID the task's chat messages

tdf task SUBCOMMAND --help shows a subcommand's flags.
`,
	"cluster": `Usage: tdf cluster SUBCOMMAND [flags]

Subcommands:
  status | members          the answering node's view: leader, term, members
  join --id ID --raft-addr HOST:PORT --api-url URL   add a member
  remove ID                 remove a member
  transfer-leadership [--to ID]
`,
	"snapshot": `Usage: tdf snapshot save --out FILE | restore --in FILE [flags]

Subcommands:
  save --out FILE      a consistent backup of the cluster's state
  restore --in FILE    restore a backup into the cluster
`,
	"credential": `Usage: tdf credential set|list|delete [flags]

Git tokens and agent keys, sealed with the cluster keyring (docs/security.md).
tdf credential SUBCOMMAND --help shows a subcommand's flags.
`,
	"token": `Usage: tdf token create|list|revoke|save [flags]

API tokens: an admin's, or a user's (docs/security.md).
tdf token SUBCOMMAND --help shows a subcommand's flags.
`,
	"node": `Usage: tdf node cordon|uncordon|drain|destroy ID [flags]

An operator's action on one node (admin).
`,
	"keyring": `Usage: tdf keyring init --out FILE | rotate [flags]

The cluster keyring that seals credentials and signing keys; copy it to every node.
`,
	"tls": `Usage: tdf tls init --dir DIR --nodes n1,n2,n3 [--hosts 127.0.0.1,localhost]
`,
	"completion": `Usage: tdf completion bash|zsh|fish

Prints a completion script: source <(tdf completion bash) in bash or zsh;
tdf completion fish | source in fish.
`,
}

// groupHelp answers "tdf GROUP --help", "tdf GROUP help" and "tdf help
// GROUP" with the group's usage.
func groupHelp(w io.Writer, args []string) bool {
	if len(args) == 2 && args[0] == "help" {
		args = []string{args[1], "--help"}
	}
	if len(args) < 2 || !isHelpArg(args[1]) {
		return false
	}
	u, ok := groupUsage[args[0]]
	if !ok {
		return false
	}
	fmt.Fprint(w, u)
	fmt.Fprint(w, exitCodesHelp)
	return true
}

func isHelpArg(a string) bool {
	switch strings.TrimLeft(a, "-") {
	case "h", "help":
		return true
	}
	return false
}
