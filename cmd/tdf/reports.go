package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdf-project/tdf/api"
)

// What the agents report, as the CLI shows it: a task's push result and
// chat messages, a node's event log.

// showOutput prints a task's output lines, the push result among them.
func showOutput(w io.Writer, o api.TaskOutput) {
	if o.Branch != "" || o.PRURL != "" || o.Summary != "" {
		fmt.Fprintf(w, "output\tbranch %s  pr %s  %s\n", o.Branch, o.PRURL, o.Summary)
	}
	if p := o.Push; p != nil {
		line := "not pushed"
		if p.Pushed {
			line = "pushed"
		}
		line += fmt.Sprintf("  commit %s  branch %s", orDash(p.CommitSHA), orDash(p.BranchName))
		if p.PRURL != "" {
			line += fmt.Sprintf("  pr #%d %s", p.PRNumber, p.PRURL)
		}
		if p.HasUncommittedChanges {
			line += "  (had uncommitted changes)"
		}
		fmt.Fprintf(w, "push\t%s\n", line)
		if p.Error != "" {
			fmt.Fprintf(w, "push error\t%s\n", p.Error)
		}
	}
	if o.AgentError != "" {
		fmt.Fprintf(w, "agent error\t%s\n", o.AgentError)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// getMessages reads a task's kept chat messages.
func getMessages(ctx context.Context, c *client, id string) (api.TaskMessagesResponse, error) {
	var out api.TaskMessagesResponse
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id)+"/messages", nil, nil, &out)
	return out, err
}

// showMessages prints messages, each on one line cut to width (0: whole
// and on as many lines as it has).
func showMessages(w io.Writer, tm api.TaskMessagesResponse, width int) {
	fmt.Fprintf(w, "\nMESSAGES (%d kept", len(tm.Messages))
	if tm.Dropped > 0 {
		fmt.Fprintf(w, ", %d earlier dropped", tm.Dropped)
	}
	fmt.Fprintln(w, ")")
	for _, m := range tm.Messages {
		text := m.Content
		if m.ToolMetadata != "" && width == 0 {
			text += "\n  tool: " + m.ToolMetadata
		}
		if width > 0 {
			text = strings.Join(strings.Fields(text), " ")
			if len(text) > width {
				text = strings.ToValidUTF8(text[:width], "") + "…"
			}
		}
		origin := ""
		if m.Origin != "" {
			origin = " (" + m.Origin + ")"
		}
		fmt.Fprintf(w, "%s  %-9s%s %s\n", m.Timestamp, m.Role, origin, text)
	}
}

// lastMessages keeps the newest n messages.
func lastMessages(tm api.TaskMessagesResponse, n int) api.TaskMessagesResponse {
	if len(tm.Messages) > n {
		tm.Dropped += len(tm.Messages) - n
		tm.Messages = tm.Messages[len(tm.Messages)-n:]
	}
	return tm
}

// runTaskMessages is tdf task messages ID: every kept message in full.
func runTaskMessages(ctx context.Context, c *client, id string, asJSON bool) error {
	tm, err := getMessages(ctx, c, id)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(tm)
	}
	showMessages(os.Stdout, tm, 0)
	return nil
}

// showNode prints one node and its event log (tdf nodes ID).
func showNode(ctx context.Context, c *client, id string, asJSON bool) error {
	var n api.NodeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, nil, &n); err != nil {
		return err
	}
	if asJSON {
		return printJSON(n)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\nstatus\t%s\nhealth\t%s\nuser\t%s\nsize\t%s %s\nip\t%s\nworkspaces\t%d\n",
		n.ID, n.Status, n.Health, n.UserID, n.Size, n.Location, n.IPv4, n.ActiveWorkspaces)
	if n.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", n.LastError)
	}
	fmt.Fprintln(tw, "\nEVENTS\tLEVEL\tSOURCE\tWORKSPACE\tMESSAGE")
	for _, e := range n.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Level, e.Source, e.WorkspaceID, e.Message)
	}
	return tw.Flush()
}
