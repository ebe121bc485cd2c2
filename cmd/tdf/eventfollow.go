package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tdf-project/tdf/api"
)

// followEvents follows a task's event stream until onEvent (or showTask,
// after a reset or a reconnection) says it has ended. Event ids are the
// same on every member, so when the stream's node dies or ends the stream,
// the watch reconnects to the next member with Last-Event-ID and misses
// nothing; it re-reads the task there first, in case no event had arrived.
func followEvents(ctx context.Context, c *client, id string, out io.Writer, showTask func(*api.Task) bool, onEvent func(api.EventMessage) bool) error {
	ms := newMembers(c)
	ms.refresh(ctx, c)
	cur, lastID := 0, ""
	var failingSince time.Time
	for {
		mc := ms.list[cur]
		tick := func() { ms.refresh(ctx, mc) }
		ended, seen, err := streamEvents(ctx, mc, id, lastID, showTask, onEvent, tick)
		if seen != "" {
			lastID, failingSince = seen, time.Time{}
		}
		if ended || ctx.Err() != nil {
			return nil
		}
		var re retryableError
		if !errors.As(err, &re) {
			return err
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > followGiveUp {
			return fmt.Errorf("event stream: no member answers: %w", err)
		}
		cur = (cur + 1) % len(ms.list)
		fmt.Fprintf(out, "%s  (%v; resuming the event stream on %s after event %q)\n", time.Now().Format("15:04:05"), err, ms.list[cur].addr, lastID)
		sleepCtx(ctx, 200*time.Millisecond)
		ms.refresh(ctx, ms.list[cur])
		// The task as the new member has it, in case the change that ends
		// it came while no stream was open.
		var now api.TaskResponse
		if err := ms.list[cur].do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, nil, &now); err == nil && now.Task != nil && showTask(now.Task) {
			return nil
		}
	}
}

// streamEvents reads one connection of the event stream. It returns the
// last event id seen; err is a retryableError when another member may do
// better (unreachable, 5xx, the stream ended).
// tick runs on every line read (it refreshes the member list when due).
func streamEvents(ctx context.Context, c *client, id, lastID string, showTask func(*api.Task) bool, onEvent func(api.EventMessage) bool, tick func()) (ended bool, seen string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.addr+"/v1/events?task_id="+url.QueryEscape(id), nil)
	if err != nil {
		return false, "", err
	}
	c.authorize(req)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return false, "", retryableError{reachError(c.addr, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("event stream: HTTP %d", resp.StatusCode)
		var e api.ErrorBody
		if b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			msg = fmt.Sprintf("event stream: %s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
		}
		if resp.StatusCode >= 500 {
			return false, "", retryable("%s: %s", c.addr, msg)
		}
		return false, "", fmt.Errorf("%s", msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		tick()
		line := sc.Text()
		if line == "" {
			event = ""
			continue
		}
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			event = name
			continue
		}
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			seen = v
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if event == "reset" {
			// Changes were missed (or were too many to replay): the task
			// itself says where it is now.
			var now api.TaskResponse
			if err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, nil, &now); err == nil && now.Task != nil && showTask(now.Task) {
				return true, seen, nil
			}
			continue
		}
		var ev api.EventMessage
		if json.Unmarshal([]byte(data), &ev) != nil || ev.Task == nil {
			continue
		}
		if onEvent(ev) {
			return true, seen, nil
		}
	}
	return false, seen, retryable("%s: event stream ended: %v", c.addr, sc.Err())
}
