package main

import (
	"context"
	"flag"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tdf-project/tdf/api"
)

// runTaskAction runs tdf task rerun ID and tdf task prompt ID --prompt P.
func runTaskAction(ctx context.Context, fs *flag.FlagSet, action string, args []string, addr *string, asJSON *bool) error {
	prompt := ""
	if action == "prompt" {
		fs.StringVar(&prompt, "prompt", "", "the follow-up prompt (required)")
	}
	c, err := parseClient(fs, args, addr)
	if err != nil {
		return err
	}
	if err := checkRequired(fs); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("task %s: needs exactly one task id", action)
	}
	path := "/v1/tasks/" + url.PathEscape(fs.Arg(0)) + "/" + action
	var body any = struct{}{}
	if action == "prompt" {
		body = api.FollowUpRequest{Prompt: prompt}
	}
	var out api.TaskResponse
	if err := c.do(ctx, http.MethodPost, path, body, nil, &out); err != nil {
		return err
	}
	return showTask(out.Task, *asJSON)
}

// timeArg turns --since/--until into RFC 3339: a time as given, or a
// duration (24h) before now.
func timeArg(flagName, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return time.Now().Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", usageErrorf("task list: %s %q is neither an RFC 3339 time nor a duration such as 24h", flagName, v)
}

// oneLine cuts s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
