package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// watchTask follows a task over the event stream, printing each change of
// status or step, until it has ended and been cleaned up. A task that
// failed or was cancelled is a taskEndedError (exit 1).
func watchTask(ctx context.Context, c *client, id string, out io.Writer) error {
	var final *taskEndedError
	err := followTask(ctx, c, id, out, &final)
	if err == nil && final != nil {
		return final
	}
	return err
}

func followTask(ctx context.Context, c *client, id string, out io.Writer, final **taskEndedError) error {
	var tr api.TaskResponse
	// A consistent read: the task may have just been submitted through
	// another node.
	if err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id)+"?consistent=true", nil, nil, &tr); err != nil {
		return err
	}
	last := ""
	// show prints a change; events carry what changed (api.TaskChange),
	// a GET the whole task.
	show := func(st fsm.Status, step fsm.Step, cleanup string, attempts int, errMsg string) bool {
		line := fmt.Sprintf("%s  %-12s %-20s attempts %d", time.Now().Format("15:04:05"), st, step, attempts)
		if cleanup == api.CleanupPending {
			line += "  (cleaning up)"
		}
		if errMsg != "" {
			line += "  error: " + errMsg
		}
		if key := fmt.Sprint(st, step, cleanup, attempts); key != last {
			last = key
			fmt.Fprintln(out, line)
		}
		ended := st.Terminal() && cleanup != api.CleanupPending
		if ended && st != fsm.StatusCompleted {
			*final = &taskEndedError{id: id, status: string(st), message: errMsg}
		}
		return ended
	}
	showTask := func(t *api.Task) bool { return show(t.Status, t.ExecutionStep, t.Cleanup, t.Attempts, t.ErrorMessage) }
	if showTask(tr.Task) {
		return nil
	}
	onEvent := func(ev api.EventMessage) bool {
		t := ev.Task
		return t != nil && show(t.Status, t.ExecutionStep, t.Cleanup, t.Attempts, t.ErrorMessage)
	}
	return followEvents(ctx, c, id, out, showTask, onEvent)
}

func runErrors(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("errors", flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	task := fs.String("task", "", "only errors of this task")
	node := fs.String("node", "", "only errors of this node")
	kind := fs.String("kind", "", "only errors of this kind (step_error, task_failed, fenced, sweeper, cleanup, node_error, reconciler, recovered, push_failed)")
	limit := fs.Int("limit", 50, "page size")
	c, err := parseClient(fs, args, addr)
	if err != nil {
		return err
	}
	q := queryOf(map[string]string{"task_id": *task, "node_id": *node, "kind": *kind, "limit": fmt.Sprint(*limit)})
	var out struct {
		Errors     []fsm.ErrorRecord `json:"errors"`
		NextCursor string            `json:"next_cursor"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/errors?"+q.Encode(), nil, nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tTASK\tNODE\tSTEP\tMESSAGE")
	for _, e := range out.Errors {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Kind, e.TaskID, e.NodeID, e.Step, e.Message)
	}
	return tw.Flush()
}

func runNodes(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	status := fs.String("status", "", "only nodes with this status (active, warm, destroying, deleted)")
	user := fs.String("user", "", "only nodes of this user")
	c, err := parseClient(fs, args, addr)
	if err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
	case 1:
		return showNode(ctx, c, fs.Arg(0), *asJSON)
	default:
		return usageErrorf("tdf nodes takes at most one node id, got %d arguments", fs.NArg())
	}
	q := queryOf(map[string]string{"status": *status, "user_id": *user})
	var out struct {
		Nodes []api.NodeView `json:"nodes"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/nodes?"+q.Encode(), nil, nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tHEALTH\tUSER\tSIZE\tLOCATION\tIP\tWORKSPACES\tPER HOUR\tACCRUED\tALARM")
	var hourly, accrued float64
	currency := ""
	for _, n := range out.Nodes {
		alarm := ""
		if n.Alarm != nil {
			alarm = n.Alarm.Due.Format(time.RFC3339)
		}
		perHour, sum := "-", "-"
		if n.Cost != nil {
			perHour, sum = money(n.Cost.Hourly, n.Cost.Currency), money(n.Cost.Accrued, n.Cost.Currency)
			currency, accrued = n.Cost.Currency, accrued+n.Cost.Accrued
			if n.Status != "deleted" {
				hourly += n.Cost.Hourly
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.ID, n.Status, n.Health, n.UserID, n.Size, n.Location, n.IPv4, n.ActiveWorkspaces, perHour, sum, alarm)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if currency != "" {
		fmt.Printf("live nodes cost %s an hour; these nodes have cost %s so far\n", money(hourly, currency), money(accrued, currency))
	}
	return nil
}

// money prints an amount as the cloud bills it (net, four decimals).
func money(v float64, currency string) string { return fmt.Sprintf("%.4f %s", v, currency) }

// completion prints a bash completion script for the commands and flags.
func runCompletion(args []string) error {
	if len(args) != 1 {
		return usageErrorf("usage: tdf completion bash|zsh|fish  (then, in bash: source <(tdf completion bash))")
	}
	switch args[0] {
	case "bash":
	case "zsh":
		// zsh runs the bash script through its bash completion layer.
		fmt.Print("autoload -U +X bashcompinit && bashcompinit\n")
	case "fish":
		fmt.Print(fishCompletion)
		return nil
	default:
		return usageErrorf("tdf completion: %q is not bash, zsh or fish", args[0])
	}
	fmt.Print(`_tdf() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} sub=${COMP_WORDS[2]}
  case $COMP_CWORD in
    1) COMPREPLY=($(compgen -W "server dev fakecloud task cluster snapshot errors nodes import tls healthcheck completion version help" -- "$cur")); return;;
    2) case $cmd in
         task) COMPREPLY=($(compgen -W "submit get list cancel rerun prompt watch idle-reset messages" -- "$cur")); return;;
         cluster) COMPREPLY=($(compgen -W "status members join remove transfer-leadership" -- "$cur")); return;;
         snapshot) COMPREPLY=($(compgen -W "save restore" -- "$cur")); return;;
         tls) COMPREPLY=($(compgen -W "init" -- "$cur")); return;;
       esac;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(tdf $cmd $sub --help 2>&1 | grep -oE '^  -[a-z-]+' | sed 's/^  -/--/')" -- "$cur"))
  fi
}
complete -F _tdf tdf
`)
	return nil
}

// fishCompletion completes tdf's commands and the task subcommands in fish.
const fishCompletion = `complete -c tdf -f
complete -c tdf -n __fish_use_subcommand -a "server dev fakecloud lb task credential token keyring cluster snapshot errors nodes node import tls healthcheck completion bench version help"
complete -c tdf -n "__fish_seen_subcommand_from task" -a "submit get list cancel rerun prompt watch idle-reset messages"
complete -c tdf -n "__fish_seen_subcommand_from cluster" -a "status members join remove transfer-leadership"
complete -c tdf -n "__fish_seen_subcommand_from snapshot" -a "save restore"
complete -c tdf -n "__fish_seen_subcommand_from node" -a "cordon uncordon drain destroy"
complete -c tdf -n "__fish_seen_subcommand_from completion" -a "bash zsh fish"
`
