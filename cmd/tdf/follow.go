package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
)

// Following a task with blocking queries: GET /v1/tasks/{id}?index=N&wait=
// answers when the task has changed after index N, with the index to ask
// for next in X-Tdf-Index. Any member answers, so when the node the client
// talks to dies, the next member in the cluster's list takes over with the
// same index: nothing is missed and nothing is older than what was shown.

const (
	// followWait is each blocking query's wait.
	followWait = 30 * time.Second
	// followGiveUp is how long the watch keeps trying while no member
	// answers.
	followGiveUp = 2 * time.Minute
)

// retryableError is an answer another member (or a later try) may give
// differently: the node is unreachable or has no leader.
type retryableError struct{ error }

func retryable(format string, args ...any) error {
	return retryableError{fmt.Errorf(format, args...)}
}

// indexedGet reads path into out and returns the answer's X-Tdf-Index.
func (c *client) indexedGet(ctx context.Context, path string, out any) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.addr+path, nil)
	if err != nil {
		return 0, err
	}
	c.authorize(req)
	resp, err := c.stream.Do(req)
	if err != nil {
		return 0, retryableError{reachError(c.addr, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, retryable("%s: %v", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
		var e api.ErrorBody
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			msg = fmt.Sprintf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
		}
		if resp.StatusCode >= 500 {
			return 0, retryable("%s: %s", c.addr, msg)
		}
		return 0, errors.New(msg)
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Tdf-Index"), 10, 64)
	return idx, json.Unmarshal(data, out)
}

// members is the list of clients a watch can move between: c, the
// --addr list, and every member the cluster lists (read again from time to
// time: members register their API address shortly after they start).
type members struct {
	list    []*client
	seen    map[string]bool
	fetched time.Time
}

func newMembers(c *client) *members {
	m := &members{seen: map[string]bool{}}
	m.add(c, c.addr)
	for _, o := range c.others {
		m.add(c, o)
	}
	return m
}

func (m *members) add(c *client, addr string) {
	if addr != "" && !m.seen[addr] {
		m.seen[addr] = true
		other := *c
		other.addr = addr
		m.list = append(m.list, &other)
	}
}

// refresh reads the member list through c, at most every few seconds
// once it names another member. The list needs an admin or member token;
// a user token follows through the --addr list alone.
func (m *members) refresh(ctx context.Context, c *client) {
	every := 10 * time.Second
	if len(m.list) == 1 {
		every = time.Second
	}
	if time.Since(m.fetched) < every {
		return
	}
	m.fetched = time.Now()
	var st cluster.Status
	if err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &st); err != nil {
		return
	}
	for _, mb := range st.Members {
		if mb.State != "removed" {
			m.add(c, strings.TrimRight(mb.APIAddr, "/"))
		}
	}
}

// followIndexed prints each change of a task's status or step until it has
// ended and been cleaned up. index is a write's X-Tdf-Index (0: none).
func followIndexed(ctx context.Context, c *client, id string, index uint64, out io.Writer) error {
	ms := newMembers(c)
	ms.refresh(ctx, c)
	cur := 0
	last := ""
	var failingSince time.Time
	path := "/v1/tasks/" + url.PathEscape(id)
	for first := true; ; first = false {
		q := url.Values{}
		if index > 0 {
			q.Set("index", strconv.FormatUint(index, 10))
		}
		if !first {
			q.Set("wait", followWait.String())
		}
		var tr api.TaskResponse
		start := time.Now()
		got, err := ms.list[cur].indexedGet(ctx, path+"?"+q.Encode(), &tr)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var re retryableError
			if !errors.As(err, &re) {
				return err
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > followGiveUp {
				return fmt.Errorf("no member answers: %w", err)
			}
			next := (cur + 1) % len(ms.list)
			if next != cur {
				fmt.Fprintf(out, "%s  (%s; following through %s)\n", time.Now().Format("15:04:05"), err, ms.list[next].addr)
			}
			cur, first = next, true
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		failingSince = time.Time{}
		ms.refresh(ctx, ms.list[cur])
		if t := tr.Task; t != nil {
			if key := fmt.Sprint(t.Status, t.ExecutionStep, t.Cleanup, t.Attempts); key != last {
				last = key
				fmt.Fprintln(out, taskLine(t))
			}
			if t.Status.Terminal() && t.Cleanup != api.CleanupPending {
				return taskEnded(t) // exit 1 if it failed or was cancelled
			}
		}
		if got > index {
			index = got
		} else if time.Since(start) < 50*time.Millisecond {
			// An answer at once without a newer index (a node whose
			// window of changes does not reach back): do not spin.
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

func taskLine(t *api.Task) string {
	line := fmt.Sprintf("%s  %-12s %-20s attempts %d", time.Now().Format("15:04:05"), t.Status, t.ExecutionStep, t.Attempts)
	if t.Cleanup == api.CleanupPending {
		line += "  (cleaning up)"
	}
	if t.ErrorMessage != "" {
		line += "  error: " + t.ErrorMessage
	}
	return line
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
