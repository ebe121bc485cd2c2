package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
)

// client talks to any node's API.
type client struct {
	addr  string
	token string
	http  *http.Client
	// stream has no overall timeout, for the event stream.
	stream *http.Client
	// others are further members' URLs (--addr a,b,c): a watch moves on
	// to them when addr stops answering (follow.go).
	others []string
}

// clientAuth holds the client commands' --token and --ca-file (one
// command runs per process).
var clientAuth struct{ token, caFile string }

func clientFlags(fs *flag.FlagSet) *string {
	fs.StringVar(&clientAuth.token, "token", "", "API bearer token (prefer TDF_TOKEN: flags show in ps)")
	fs.StringVar(&clientAuth.caFile, "ca-file", "", "PEM CA certificate to trust for an https --addr (e.g. the cluster CA from tdf tls init)")
	return fs.String("addr", "http://127.0.0.1:8001", "API URL of any node (a comma-separated list: the others are tried when it does not answer)")
}

func newClient(addr string) (*client, error) {
	addr, rest, _ := strings.Cut(addr, ",")
	var others []string
	for _, o := range strings.Split(rest, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			others = append(others, o)
		}
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--addr %q is not an http(s) URL such as http://127.0.0.1:8001", addr)
	}
	token, caFile := clientAuth.token, clientAuth.caFile
	if token == "" {
		token = os.Getenv("TDF_TOKEN")
	}
	if token == "" {
		token = savedClientToken(addr)
	}
	if caFile == "" {
		caFile = os.Getenv("TDF_CA_FILE")
	}
	hc, err := cluster.NewAPIClient(caFile, "", 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	stream := &http.Client{Transport: hc.Transport}
	return &client{addr: strings.TrimRight(addr, "/"), token: token, http: hc, stream: stream, others: others}, nil
}

// reachError explains a failed request, with a hint when the server's
// certificate is not trusted.
func reachError(addr string, err error) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("cannot reach %s: %w (pass the CA that signed its certificate with --ca-file or TDF_CA_FILE)%w", addr, err, unreachableMark)
	}
	return fmt.Errorf("cannot reach %s: %w%w", addr, err, unreachableMark)
}

// unreachableMark adds errUnreachable to an error without changing its text.
var unreachableMark = markError{errUnreachable}

type markError struct{ err error }

func (markError) Error() string   { return "" }
func (m markError) Unwrap() error { return m.err }

// authorize adds the bearer token, if any, to a request.
func (c *client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// do sends a request and decodes a 2xx JSON answer into out; any other
// answer becomes an error carrying the server's message.
func (c *client) do(ctx context.Context, method, path string, body any, hdr map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return reachError(c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e api.ErrorBody
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return &apiError{Status: resp.StatusCode, msg: fmt.Sprintf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode) + authHint(c, resp.StatusCode)}
		}
		return &apiError{Status: resp.StatusCode, msg: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runTask(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, groupUsage["task"])
		return errUsage
	}
	fs := flag.NewFlagSet("task "+args[0], flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "submit":
		var spec api.SubmitRequest
		fs.StringVar(&spec.ProjectID, "project", "", "project id (required)")
		fs.StringVar(&spec.UserID, "user", "", "user id (required)")
		fs.StringVar(&spec.Prompt, "prompt", "", "what the agent should do (required)")
		fs.StringVar(&spec.Repository, "repo", "", "repository (required)")
		fs.StringVar(&spec.Branch, "branch", "", "branch to start from")
		fs.StringVar(&spec.VMSize, "size", "", "VM size: small, medium or large")
		fs.StringVar(&spec.VMLocation, "location", "", "VM location, e.g. fsn1")
		fs.StringVar(&spec.PreferredNodeID, "node", "", "preferred node id")
		key := fs.String("idempotency-key", "", "makes a retry return the first result")
		wait := fs.Bool("wait", false, "follow the task's progress until it ends")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if err := checkRequired(fs); err != nil {
			return err
		}
		var hdr map[string]string
		if *key != "" {
			hdr = map[string]string{"Idempotency-Key": *key}
		}
		var out api.TaskResponse
		if err := c.do(ctx, http.MethodPost, "/v1/tasks", spec, hdr, &out); err != nil {
			return err
		}
		if *wait {
			fmt.Printf("submitted %s at index %d\n", out.Task.ID, out.Index)
			return followIndexed(ctx, c, out.Task.ID, out.Index, os.Stdout)
		}
		if *asJSON {
			return printJSON(out)
		}
		if err := showTask(out.Task, false); err != nil {
			return err
		}
		fmt.Printf("\nindex %d (any node's reads with --index %d see this task)\n", out.Index, out.Index)
		return nil
	case "get", "cancel":
		index := fs.Uint64("index", 0, "get: answer once the node has applied this raft index (a write's X-Tdf-Index)")
		stale := fs.Bool("stale", false, "get: let the node answer from its own state however far behind it is")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("tdf task %s needs exactly one task id", args[0])
		}
		id := url.PathEscape(fs.Arg(0))
		var out api.TaskResponse
		if args[0] == "get" {
			q := queryOf(map[string]string{"stale": strconv.FormatBool(*stale)})
			if *index > 0 {
				q.Set("index", strconv.FormatUint(*index, 10))
			}
			err = c.do(ctx, http.MethodGet, "/v1/tasks/"+id+"?"+q.Encode(), nil, nil, &out)
		} else {
			err = c.do(ctx, http.MethodPost, "/v1/tasks/"+id+"/cancel", api.CancelRequest{}, nil, &out)
		}
		if err != nil {
			return err
		}
		if err := showTask(out.Task, *asJSON); err != nil || args[0] != "get" {
			return err
		}
		if out.Archived {
			// On stderr, so that --json stays the task alone.
			fmt.Fprintln(os.Stderr, "archived: the task left the cluster's state after its retention; this is the answering node's archived copy")
			return nil
		}
		if *asJSON {
			return nil
		}
		// The newest chat messages, one line each (tdf task messages shows
		// them whole); none from a server that keeps none.
		if tm, err := getMessages(ctx, c, out.Task.ID); err == nil && len(tm.Messages) > 0 {
			showMessages(os.Stdout, lastMessages(tm, 10), 100)
		}
		return nil
	case "messages":
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("tdf task messages needs exactly one task id")
		}
		return runTaskMessages(ctx, c, fs.Arg(0), *asJSON)
	case "watch":
		index := fs.Uint64("index", 0, "start from this raft index (a write's X-Tdf-Index)")
		events := fs.Bool("events", false, "follow the event stream of the node --addr names instead of blocking queries to any member")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("tdf task watch needs exactly one task id")
		}
		if *events {
			return watchTask(ctx, c, fs.Arg(0), os.Stdout)
		}
		return followIndexed(ctx, c, fs.Arg(0), *index, os.Stdout)
	case "idle-reset":
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("tdf task idle-reset needs exactly one task id")
		}
		var out api.TaskResponse
		if err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(fs.Arg(0))+"/idle-reset", struct{}{}, nil, &out); err != nil {
			return err
		}
		return showTask(out.Task, *asJSON)
	case "rerun", "prompt":
		return runTaskAction(ctx, fs, args[0], args[1:], addr, asJSON)
	case "list":
		status := fs.String("status", "", "only tasks with this status")
		user := fs.String("user", "", "only tasks of this user")
		project := fs.String("project", "", "only tasks of this project")
		since := fs.String("since", "", "only tasks created at or after this time (RFC 3339, or a duration ago such as 24h)")
		until := fs.String("until", "", "only tasks created before this time (RFC 3339, or a duration ago)")
		order := fs.String("order", "desc", "desc: newest first; asc: oldest first")
		limit := fs.Int("limit", 50, "page size")
		cursor := fs.String("cursor", "", "continue after this cursor")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		from, err := timeArg("--since", *since)
		if err != nil {
			return err
		}
		to, err := timeArg("--until", *until)
		if err != nil {
			return err
		}
		if *order != "asc" && *order != "desc" {
			return usageErrorf("task list: --order is asc or desc, not %q", *order)
		}
		q := queryOf(map[string]string{"status": *status, "user_id": *user, "project_id": *project,
			"created_after": from, "created_before": to, "order": *order, "cursor": *cursor, "limit": fmt.Sprint(*limit)})
		var out api.TaskListResponse
		if err := c.do(ctx, http.MethodGet, "/v1/tasks?"+q.Encode(), nil, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out)
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tSTEP\tUSER\tPROJECT\tCREATED\tERROR")
		for _, t := range out.Tasks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Status, t.ExecutionStep, t.UserID, t.ProjectID, t.CreatedAt.Format(time.RFC3339), oneLine(t.ErrorMessage, 60))
		}
		if out.NextCursor != "" {
			fmt.Fprintf(tw, "(more: --cursor %s)\n", out.NextCursor)
		}
		return tw.Flush()
	}
	fmt.Fprintf(os.Stderr, "tdf task: unknown subcommand %q (submit, get, list, cancel, rerun, prompt, watch, idle-reset, messages)\n", args[0])
	return errUsage
}

func parseClient(fs *flag.FlagSet, args []string, addr *string) (*client, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if a, ok := os.LookupEnv("TDF_ADDR"); ok && !flagSet(fs, "addr") {
		*addr = a
	}
	return newClient(*addr)
}

func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func showTask(t *api.Task, asJSON bool) error {
	if asJSON {
		return printJSON(api.TaskResponse{Task: t})
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\nstatus\t%s\nstep\t%s\nuser\t%s\nproject\t%s\nrepository\t%s\ncreated\t%s\n",
		t.ID, t.Status, t.ExecutionStep, t.UserID, t.ProjectID, t.Repository, t.CreatedAt.Format(time.RFC3339))
	if t.ErrorMessage != "" {
		fmt.Fprintf(tw, "error\t%s\n", t.ErrorMessage)
	}
	showOutput(tw, t.Output)
	fmt.Fprintln(tw, "\nHISTORY\tFROM\tTO\tACTOR\tREASON")
	for _, e := range t.History {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.From, e.To, e.Actor.Type, e.Reason)
	}
	fmt.Fprintln(tw, "\nSTEP\tATTEMPT\tLEADER\tSTARTED\tTOOK\tOUTCOME\tERROR (NOTE)")
	for _, st := range t.Steps {
		took := "running"
		if st.Finished != nil {
			took = st.Finished.Sub(st.Started).Round(time.Millisecond).String()
		}
		detail := st.Error
		if detail == "" && st.Note != "" {
			detail = "(" + st.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", st.Step, st.Attempt, st.Leader, st.Started.Format("15:04:05.000"), took, st.Outcome, detail)
	}
	return tw.Flush()
}

func runCluster(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: tdf cluster status|members|join --id ID --raft-addr HOST:PORT --api-url URL|remove ID|transfer-leadership [--to ID] [--addr URL]")
		return errUsage
	}
	if args[0] == "join" {
		return runClusterJoin(ctx, args[1:])
	}
	fs := flag.NewFlagSet("cluster "+args[0], flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	to := fs.String("to", "", "transfer-leadership: the member to hand leadership to (default: any)")
	c, err := parseClient(fs, args[1:], addr)
	if err != nil {
		return err
	}
	switch args[0] {
	case "status", "members":
		var st cluster.Status
		if err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &st); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(st)
		}
		showClusterStatus(os.Stdout, st)
		return nil
	case "remove":
		if fs.NArg() != 1 {
			return fmt.Errorf("tdf cluster remove needs exactly one member id")
		}
		if err := c.do(ctx, http.MethodDelete, "/v1/cluster/members/"+url.PathEscape(fs.Arg(0)), nil, nil, nil); err != nil {
			return err
		}
		fmt.Println("removed", fs.Arg(0))
		return nil
	case "transfer-leadership":
		var out map[string]string
		if err := c.do(ctx, http.MethodPost, "/v1/cluster/transfer-leadership", map[string]string{"to": *to}, nil, &out); err != nil {
			return err
		}
		fmt.Printf("leadership handed over by %s\n", out["transferred_from"])
		return nil
	}
	fmt.Fprintf(os.Stderr, "tdf cluster: unknown subcommand %q (status, members, join, remove, transfer-leadership)\n", args[0])
	return errUsage
}

// queryOf is a list request's query: the filters that are set.
func queryOf(filters map[string]string) url.Values {
	q := url.Values{}
	for k, v := range filters {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}
