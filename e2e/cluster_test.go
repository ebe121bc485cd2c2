package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2e.RemoveBinary()
	os.Exit(code)
}

const (
	tasksPerPhase = 100
	// submitWorkers submit concurrently, so that requests are in flight
	// when the leader is killed.
	submitWorkers = 4
	// killAfter is how many tasks of the second batch are accepted before
	// the leader is killed; the rest of the batch races the failover.
	killAfter = 10
	// submitDeadline bounds the retries of one submission.
	submitDeadline = 60 * time.Second
)

// TestReplicatedCore is the acceptance test of the replicated core: writes
// on any node, kill -9 of the leader under load, catch-up of the restarted
// node, and a full stop and restart, with no task lost or duplicated.
//
// The leader is killed once the first killAfter tasks of the second batch
// (sent round-robin to the two other nodes, which forward to the leader)
// are accepted, so that submissions are in flight at the moment of the
// kill: their outcome is unknown, and whoever re-sends them (the
// forwarding node or this test) does so with the same Idempotency-Key.
// The count of exactly 200 tasks, one per key, proves no re-send created
// a duplicate.
func TestReplicatedCore(t *testing.T) {
	began := time.Now()
	phase := func(name string) func() {
		start := time.Now()
		t.Logf("== %s", name)
		return func() { t.Logf("== %s done in %s", name, time.Since(start).Round(time.Millisecond)) }
	}

	end := phase("start three nodes")
	c := e2e.StartCluster(t, e2e.Options{})
	c.Leader()
	end()

	led := newLedger()

	// 1. 100 tasks round-robin over all three nodes.
	end = phase("submit 100 tasks round-robin over n1..n3")
	if err := startLoad(c, led, 0, tasksPerPhase, c.Nodes, -1).wait(); err != nil {
		t.Fatal(err)
	}
	end()

	// 2. kill -9 the leader while the next batch is in flight, and finish
	// that batch on the two survivors.
	end = phase("kill -9 the leader under load; 100 more tasks on the survivors")
	victim := c.Leader()
	survivors := c.Others(victim)
	l := startLoad(c, led, tasksPerPhase, tasksPerPhase, survivors, killAfter)
	select {
	case <-l.threshold:
	case <-l.done:
	}
	if lead, err := c.LeaderAmong(c.Live()); err != nil || lead != victim {
		// Not expected without faults; the test still kills the node it
		// chose, which then is just a follower.
		t.Logf("leadership moved before the kill (now %v, err %v)", lead, err)
	}
	killedAt := time.Now()
	c.Kill(victim)
	newLeader := c.Leader()
	t.Logf("%s took over %s after the kill", newLeader.ID, time.Since(killedAt).Round(time.Millisecond))
	if err := l.wait(); err != nil {
		t.Fatal(err)
	}
	end()
	led.logStats(t)

	end = phase("all 200 tasks readable on both survivors")
	want := led.ids(t)
	if len(want) != 2*tasksPerPhase {
		t.Fatalf("%d tasks accepted, want %d", len(want), 2*tasksPerPhase)
	}
	for _, n := range survivors {
		waitTasks(t, c, n, want)
		checkEachTask(t, c, n, led)
	}
	checkReplays(t, c, led, survivors)
	end()

	// 3. The killed node comes back and catches up.
	end = phase("restart the killed node; it catches up")
	hs := c.WaitConverged(survivors, 0)
	c.Start(victim)
	h := c.WaitConverged(c.Nodes, hs.AppliedIndex)
	waitTasks(t, c, victim, want)
	end()

	// 4. Stop everything with SIGTERM, start everything again.
	end = phase("stop all three (SIGTERM), start all three")
	// The leader's runner may still be committing step results; take the
	// state as close to the stop as possible.
	h = c.WaitConverged(c.Nodes, h.AppliedIndex)
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Stop(n)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range c.Nodes {
		c.Start(n)
	}
	c.Leader()
	after := c.WaitConverged(c.Nodes, h.AppliedIndex)
	if after.AppliedIndex == h.AppliedIndex && after.Hash != h.Hash {
		t.Errorf("state hash at index %d after the full restart = %s, want %s as before the stop", h.AppliedIndex, after.Hash, h.Hash)
	}
	for _, n := range c.Nodes {
		waitTasks(t, c, n, want)
		checkEachTask(t, c, n, led)
	}
	end()

	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// ---------------------------------------------------------------------------
// Submissions

// taskView is the part of a task the test checks.
type taskView struct {
	ID     string `json:"id"`
	Prompt string `json:"prompt"`
	Status string `json:"status"`
}

type submitted struct {
	key, prompt, id string
}

// ledger records every accepted submission and what it took.
type ledger struct {
	mu      sync.Mutex
	byKey   map[string]*submitted
	byIndex map[int]*submitted

	attempts, unavailable, transport, replayed atomic.Int64
}

func newLedger() *ledger {
	return &ledger{byKey: map[string]*submitted{}, byIndex: map[int]*submitted{}}
}

func (l *ledger) logStats(t *testing.T) {
	t.Helper()
	t.Logf("submissions: %d accepted in %d requests; %d answered 503, %d transport errors (unknown outcome), %d answered as replays",
		len(l.byKey), l.attempts.Load(), l.unavailable.Load(), l.transport.Load(), l.replayed.Load())
}

// ids returns the sorted ids of every accepted task, failing the test if
// two keys got the same task.
func (l *ledger) ids(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	owner := map[string]string{}
	for key, s := range l.byKey {
		if k, dup := owner[s.id]; dup {
			t.Fatalf("keys %s and %s were both answered with task %s", k, key, s.id)
		}
		owner[s.id] = key
		out = append(out, s.id)
	}
	slices.Sort(out)
	return out
}

// load submits tasks [from, from+count) with submitWorkers workers; task i
// goes first to targets[i%len(targets)].
type load struct {
	done      chan struct{}
	threshold chan struct{} // closed when `at` tasks are accepted
	err       error
}

func startLoad(c *e2e.Cluster, led *ledger, from, count int, targets []*e2e.Node, at int) *load {
	l := &load{done: make(chan struct{}), threshold: make(chan struct{})}
	next := make(chan int)
	var accepted atomic.Int64
	var once sync.Once
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for range submitWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := submit(ctx, c, led, i, targets); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
					continue
				}
				if accepted.Add(1) == int64(at) {
					once.Do(func() { close(l.threshold) })
				}
			}
		}()
	}
	go func() {
		defer close(l.done)
		defer cancel()
		for i := from; i < from+count && ctx.Err() == nil; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		l.err = errors.Join(errs...)
	}()
	return l
}

func (l *load) wait() error {
	<-l.done
	return l.err
}

// submit posts task i with its own Idempotency-Key until some node accepts
// it. A 503 (no leader) or a transport failure (unknown outcome: the node
// may have committed the task before dying) is retried with the same key on
// the next target; any other answer is an error.
func submit(ctx context.Context, c *e2e.Cluster, led *ledger, i int, targets []*e2e.Node) error {
	key := fmt.Sprintf("e2e-key-%03d", i)
	prompt := fmt.Sprintf("e2e task %03d", i)
	body := map[string]string{
		"project_id": "p-e2e",
		"user_id":    fmt.Sprintf("u%d", i%7),
		"prompt":     prompt,
		"repository": "github.com/acme/app",
	}
	hdr := http.Header{"Idempotency-Key": {key}}
	deadline := time.Now().Add(submitDeadline)
	backoff := 100 * time.Millisecond
	var last string
	for attempt := 0; ; attempt++ {
		n := targets[(i+attempt)%len(targets)]
		led.attempts.Add(1)
		resp, err := c.Do(ctx, n, http.MethodPost, "/v1/tasks", hdr, body)
		switch {
		case ctx.Err() != nil:
			return nil // another submission failed; its error is reported
		case err != nil:
			led.transport.Add(1)
			last = fmt.Sprintf("POST %s/v1/tasks: %v", n.ID, err)
		case resp.Status == http.StatusServiceUnavailable:
			led.unavailable.Add(1)
			last = fmt.Sprintf("POST %s/v1/tasks = 503: %s", n.ID, resp.Body)
		case resp.Status == http.StatusAccepted:
			var got struct {
				Task taskView `json:"task"`
			}
			if err := json.Unmarshal(resp.Body, &got); err != nil {
				return fmt.Errorf("task %d: POST %s/v1/tasks: decode 202 answer %q: %v", i, n.ID, resp.Body, err)
			}
			if got.Task.ID == "" || got.Task.Prompt != prompt {
				return fmt.Errorf("task %d: POST %s/v1/tasks (key %s) = task %q with prompt %q, want an id and prompt %q", i, n.ID, key, got.Task.ID, got.Task.Prompt, prompt)
			}
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				led.replayed.Add(1)
			}
			led.mu.Lock()
			defer led.mu.Unlock()
			s := &submitted{key: key, prompt: prompt, id: got.Task.ID}
			led.byKey[key], led.byIndex[i] = s, s
			return nil
		default:
			return fmt.Errorf("task %d: POST %s/v1/tasks (key %s, attempt %d) = %d: %s", i, n.ID, key, attempt+1, resp.Status, resp.Body)
		}
		if err := c.Crashed(); err != nil {
			return fmt.Errorf("task %d: %w", i, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %d (key %s) not accepted within %s (%d attempts); last: %s", i, key, submitDeadline, attempt+1, last)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// checkReplays re-submits every tenth key to the given nodes in turn: each
// must answer with the task the key created first, marked as a replay.
func checkReplays(t *testing.T, c *e2e.Cluster, led *ledger, nodes []*e2e.Node) {
	t.Helper()
	for i := 0; i < 2*tasksPerPhase; i += 10 {
		s := led.byIndex[i]
		n := nodes[(i/10)%len(nodes)]
		body := map[string]string{"project_id": "p-e2e", "user_id": fmt.Sprintf("u%d", i%7), "prompt": s.prompt, "repository": "github.com/acme/app"}
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		resp, err := c.Do(ctx, n, http.MethodPost, "/v1/tasks", http.Header{"Idempotency-Key": {s.key}}, body)
		cancel()
		if err != nil {
			t.Fatalf("replay of %s on %s: %v", s.key, n.ID, err)
		}
		var got struct {
			Task taskView `json:"task"`
		}
		if resp.Status != http.StatusAccepted || json.Unmarshal(resp.Body, &got) != nil {
			t.Fatalf("replay of %s on %s = %d %s, want 202", s.key, n.ID, resp.Status, resp.Body)
		}
		if got.Task.ID != s.id || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay of %s on %s = task %s (Idempotent-Replayed %q), want task %s replayed", s.key, n.ID, got.Task.ID, resp.Header.Get("Idempotent-Replayed"), s.id)
		}
	}
}

// ---------------------------------------------------------------------------
// Reads

// listIDs pages through GET /v1/tasks on one node and returns every id in
// the order listed.
func listIDs(c *e2e.Cluster, n *e2e.Node) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if page > 50 {
			return nil, fmt.Errorf("%s: more than 50 pages of tasks", n.ID)
		}
		path := "/v1/tasks?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var out struct {
			Tasks      []taskView `json:"tasks"`
			NextCursor string     `json:"next_cursor"`
		}
		if err := c.GetJSON(n, path, &out); err != nil {
			return nil, err
		}
		for _, tk := range out.Tasks {
			if seen[tk.ID] {
				return nil, fmt.Errorf("%s: task %s listed twice (page %d)", n.ID, tk.ID, page)
			}
			seen[tk.ID] = true
			ids = append(ids, tk.ID)
		}
		if out.NextCursor == "" {
			return ids, nil
		}
		if out.NextCursor == cursor {
			return nil, fmt.Errorf("%s: next_cursor %q repeats", n.ID, cursor)
		}
		cursor = out.NextCursor
	}
}

// waitTasks waits until the node lists exactly the wanted ids (a replica
// may still be applying the last entries), and fails if it lists ids never
// accepted.
func waitTasks(t *testing.T, c *e2e.Cluster, n *e2e.Node, want []string) {
	t.Helper()
	c.WaitFor(e2e.DefaultCatchUpWait, fmt.Sprintf("%s lists the %d accepted tasks", n.ID, len(want)), func() error {
		got, err := listIDs(c, n)
		if err != nil {
			return err
		}
		if !slices.IsSorted(got) {
			return fmt.Errorf("%s lists tasks out of id order", n.ID)
		}
		if !slices.Equal(got, want) {
			extra, missing := diff(got, want)
			return fmt.Errorf("%s lists %d tasks, want %d: %d unknown (e.g. %v), %d missing (e.g. %v)", n.ID, len(got), len(want), len(extra), head(extra), len(missing), head(missing))
		}
		return nil
	})
}

// checkEachTask reads every accepted task by id from the node.
func checkEachTask(t *testing.T, c *e2e.Cluster, n *e2e.Node, led *ledger) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, s := range led.byKey {
		var got struct {
			Task taskView `json:"task"`
		}
		if err := c.GetJSON(n, "/v1/tasks/"+s.id, &got); err != nil {
			t.Fatalf("read task of %s: %v", s.key, err)
		}
		if got.Task.ID != s.id || got.Task.Prompt != s.prompt {
			t.Fatalf("GET %s/v1/tasks/%s = task %q prompt %q, want prompt %q", n.ID, s.id, got.Task.ID, got.Task.Prompt, s.prompt)
		}
	}
}

func diff(got, want []string) (extra, missing []string) {
	w := map[string]bool{}
	for _, id := range want {
		w[id] = true
	}
	g := map[string]bool{}
	for _, id := range got {
		g[id] = true
		if !w[id] {
			extra = append(extra, id)
		}
	}
	for _, id := range want {
		if !g[id] {
			missing = append(missing, id)
		}
	}
	return extra, missing
}

func head(s []string) []string { return s[:min(len(s), 3)] }
