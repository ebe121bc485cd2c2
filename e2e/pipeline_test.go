package e2e_test

// The acceptance tests of the provisioning pipeline: `tdf fakecloud` and
// three `tdf server` processes, tasks submitted over the API, and the
// fakecloud's ledger as the witness of every effect (servers, workspaces,
// sessions). Each test checks the same invariants at the end (see
// pipeRun.checkEnd): every task completed along queued → delegated →
// in_progress → completed, no step succeeded twice, one server per node,
// one workspace and one session per task, and, once the warm timeout has
// run out, no server left.

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
)

// The pipeline tests' flags (e2e.PipelineServerArgs: short timers) and
// the VM sizes their tasks ask for.
var (
	pipeServerArgs = e2e.PipelineServerArgs
	pipeCloudArgs  = e2e.PipelineCloudArgs
	pipeSizes      = []string{"small", "medium", "large"}
)

const (
	// pipeUsers is how many users the tasks are spread over.
	pipeUsers = 10
	// pipeCompleteWait bounds waiting for every submitted task to
	// complete.
	pipeCompleteWait = 3 * time.Minute
	// pipeDrainWait bounds waiting, once every task completed, for every
	// node to be destroyed (warm timeout, then the server's deletion).
	pipeDrainWait = 2 * time.Minute
	// pipeStallWait: a run in which no task changes for this long is
	// stuck (a lost callback leaves a task waiting for hours).
	pipeStallWait = time.Minute
	// pipeListEvery paces the polls that list every task.
	pipeListEvery = 500 * time.Millisecond
)

// TestPipelineEndToEnd runs 200 tasks of mixed sizes for ten users through
// the whole pipeline, in four waves: each wave is submitted once the one
// before it has completed, so its tasks find the nodes the last wave left
// warm (or still active) and claim them instead of provisioning.
func TestPipelineEndToEnd(t *testing.T) {
	began := time.Now()
	c := startPipelineCluster(t, nil, "")
	r := newPipeRun(t, c)
	const tasks, waves = 200, 4
	for w := range waves {
		from, to := w*tasks/waves, (w+1)*tasks/waves
		start := time.Now()
		if err := r.submitAll(r.specs(from, to), 4, 0, c.Nodes); err != nil {
			t.Fatal(err)
		}
		r.waitCompleted(pipeCompleteWait)
		t.Logf("wave %d: tasks %d..%d submitted and completed in %s", w+1, from, to-1, time.Since(start).Round(time.Millisecond))
	}
	r.logStats()
	// The waves make the warm pool visible: a wave finds the nodes the
	// last one released.
	sel, servers := r.checkEnd()
	if servers >= tasks || sel["warm node claimed"] == 0 {
		t.Errorf("%d servers created for %d tasks, %d warm nodes claimed: want fewer servers than tasks and some warm claims (node selections %v)",
			servers, tasks, sel["warm node claimed"], sel)
	}
	c.WaitConverged(c.Nodes, 0)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// TestPipelineSurvivesLeaderKills runs 60 tasks while the leader is killed
// (SIGKILL) five times at random moments and restarted: nothing is lost
// and nothing is done twice, whichever step each kill interrupted.
func TestPipelineSurvivesLeaderKills(t *testing.T) {
	began := time.Now()
	c := startPipelineCluster(t, nil, "")
	r := newPipeRun(t, c)
	const tasks, kills = 60, 5

	// Submissions go on in the background, paced so that the tasks are
	// spread over the kills; the kills cover their whole life: submission,
	// provisioning, the agent, the follow-up timer, cleanup and destroy.
	done := make(chan error, 1)
	go func() { done <- r.submitAll(r.specs(0, tasks), 3, 400*time.Millisecond, c.Nodes) }()
	for k := range kills {
		time.Sleep(time.Duration(2000+rand.IntN(6000)) * time.Millisecond)
		victim := c.Leader()
		r.logProgress(fmt.Sprintf("kill %d/%d of the leader %s", k+1, kills, victim.ID))
		c.Kill(victim)
		time.Sleep(time.Duration(200+rand.IntN(1500)) * time.Millisecond)
		c.Start(victim)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Leader()
	r.waitCompleted(pipeCompleteWait)
	r.logStats()
	r.checkEnd()
	r.logInterrupted()
	c.WaitConverged(c.Nodes, 0)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// TestEarlyAndDuplicateCallbacks runs tasks against agents that send the
// workspace ready callback before answering POST /workspaces, and every
// callback twice: each task still completes, and nothing advances twice.
func TestEarlyAndDuplicateCallbacks(t *testing.T) {
	began := time.Now()
	c := startPipelineCluster(t, []string{"--early-ready", "--duplicate-callbacks"}, "")
	leader := c.Leader()
	st0, err := c.Status(leader)
	if err != nil {
		t.Fatal(err)
	}
	r := newPipeRun(t, c)
	const tasks, waves = 30, 2
	for w := range waves {
		if err := r.submitAll(r.specs(w*tasks/waves, (w+1)*tasks/waves), 3, 0, c.Nodes); err != nil {
			t.Fatal(err)
		}
		r.waitCompleted(pipeCompleteWait)
	}
	r.logStats()
	r.checkEnd()

	// The faults were in force. Duplicates: every callback reaches the
	// leader (directly or forwarded), which counts it; with one leader
	// throughout, it saw each task's ready and status callbacks twice.
	st1, err := c.Status(leader)
	if err != nil {
		t.Fatal(err)
	}
	if st1.State != "leader" || st1.Term != st0.Term {
		t.Logf("leadership changed during the run (term %d → %d); the leader's callback counts are partial, not checked", st0.Term, st1.Term)
	} else {
		counts, err := callbackCounts(c, leader)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("callbacks the leader %s received: %v", leader.ID, counts)
		for _, kind := range []string{"workspace_ready", "task_status"} {
			if counts[kind] < 2*tasks {
				t.Errorf("the leader received %d %s callbacks for %d tasks, want at least two per task (--duplicate-callbacks)", counts[kind], kind, tasks)
			}
		}
	}
	// Early: the agent sent the ready callback before answering POST
	// /workspaces, so the cluster heard of the workspace running before
	// it committed the workspace_creation step's result.
	if early := earlyReadies(t, c, r); early == 0 {
		t.Errorf("no workspace was ready before its workspace_creation step finished (--early-ready)")
	}
	c.WaitConverged(c.Nodes, 0)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// callbackCounts sums a node's tdf_callbacks_total by kind.
func callbackCounts(c *e2e.Cluster, n *e2e.Node) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Client.Timeout)
	defer cancel()
	resp, err := c.Do(ctx, n, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics = %d", n.ID, resp.Status)
	}
	re := regexp.MustCompile(`(?m)^tdf_callbacks_total\{kind="([a-z_]+)",result="[a-z_]+"\} ([0-9.e+]+)$`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(resp.Body), -1) {
		var v float64
		if _, err := fmt.Sscan(m[2], &v); err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", m[0], err)
		}
		out[m[1]] += int(v)
	}
	return out, nil
}

// earlyReadies counts the tasks whose workspace the ledger shows ready
// before the task's workspace_creation step finished.
func earlyReadies(t *testing.T, c *e2e.Cluster, r *pipeRun) int {
	t.Helper()
	tasks, err := r.listTasks(c.Leader())
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]time.Time{}
	for _, e := range events {
		if e.Kind == "workspace_ready" {
			ready[e.WorkspaceID] = e.Time
		}
	}
	early := 0
	for _, tk := range tasks {
		for _, s := range tk.Steps {
			if s.Step == "workspace_creation" && s.Outcome == "success" && s.Finished != nil {
				if at, ok := ready[tk.WorkspaceID]; ok && at.Before(*s.Finished) {
					early++
				}
			}
		}
	}
	t.Logf("%d of %d workspaces were ready before their workspace_creation step finished", early, len(tasks))
	return early
}

// TestSecretsNeverLogged runs tasks with every process logging at debug
// level, through a failed server creation (retried) and a callback with a
// forged token, then searches every log for the cloud token, a private
// key and anything shaped like a JWT (every callback and management token
// is one): none may appear.
func TestSecretsNeverLogged(t *testing.T) {
	began := time.Now()
	c := startPipelineCluster(t, nil, "debug")
	r := newPipeRun(t, c)

	// The first two server creations fail with a 500 (a retried step,
	// whose error is logged and recorded).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := c.Do(ctx, c.Cloud.Node, http.MethodPost, "/fake/faults", nil, map[string]any{
		"faults": []map[string]any{{"endpoint": "create_server", "kind": "server_error", "count": 2}},
	})
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("POST /fake/faults: %v %v", err, resp)
	}

	if err := r.submitAll(r.specs(0, 12), 3, 0, c.Nodes); err != nil {
		t.Fatal(err)
	}
	// A callback with a token of the right shape that the cluster did not
	// sign: it must be refused, and not logged.
	forged := forgedJWT()
	ws := r.anyWorkspace()
	for _, n := range c.Nodes {
		resp, err := c.Do(ctx, n, http.MethodPost, "/v1/workspaces/"+ws+"/ready",
			http.Header{"Authorization": {"Bearer " + forged}}, map[string]string{"status": "running"})
		if err != nil {
			t.Fatalf("forged callback to %s: %v", n.ID, err)
		}
		if resp.Status != http.StatusUnauthorized && resp.Status != http.StatusForbidden {
			t.Errorf("callback with a forged token to %s = %d %s, want 401 or 403", n.ID, resp.Status, resp.Body)
		}
	}
	r.waitCompleted(pipeCompleteWait)
	r.checkEnd()
	var faults struct {
		Faults []struct {
			Fired int `json:"fired"`
		} `json:"faults"`
	}
	if err := c.GetJSON(c.Cloud.Node, "/fake/faults", &faults); err != nil {
		t.Fatal(err)
	}
	if len(faults.Faults) != 1 || faults.Faults[0].Fired != 2 {
		t.Errorf("GET /fake/faults = %+v, want the create_server fault fired twice", faults)
	}

	// Stop everything cleanly, so that every log is complete (shutdown
	// messages included), the fakecloud last.
	for _, n := range c.Nodes {
		c.Stop(n)
	}
	c.Stop(c.Cloud.Node)

	secrets := []struct {
		what string
		re   *regexp.Regexp
	}{
		{"the cloud token", regexp.MustCompile(regexp.QuoteMeta(c.Cloud.Token))},
		{"a private key", regexp.MustCompile(`PRIVATE KEY`)},
		{"a JWT", regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)},
		{"the forged token's signature", regexp.MustCompile(regexp.QuoteMeta(forged[strings.LastIndexByte(forged, '.')+1:]))},
	}
	var total int64
	for _, path := range c.LogPaths() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(data))
		for i, line := range strings.Split(string(data), "\n") {
			for _, s := range secrets {
				if loc := s.re.FindStringIndex(line); loc != nil {
					t.Errorf("%s line %d carries %s: %s", path, i+1, s.what, redact(line, loc))
				}
			}
		}
	}
	t.Logf("searched %d bytes of logs of %d processes; total %s", total, len(c.LogPaths()), time.Since(began).Round(time.Millisecond))
}

// ---------------------------------------------------------------------------
// The cluster

// startPipelineCluster starts the fakecloud (with pipeCloudArgs and the
// given extra flags) and three servers with the pipeline's short timers,
// and waits until the cluster can sign tokens.
//
// The wait for the signing key works around a product bug: the first
// leader of a new cluster commits the token signing key shortly after it
// is elected, and a task that reaches node_provisioning before that fails
// permanently ("tokens: no signing key yet": handlers/steps.go's
// createServer classifies the cloud-init error as permanent).
func startPipelineCluster(t *testing.T, cloudArgs []string, logLevel string) *e2e.Cluster {
	t.Helper()
	c := e2e.StartCluster(t, e2e.Options{
		LogLevel:  logLevel,
		ExtraArgs: pipeServerArgs,
		FakeCloud: &e2e.FakeCloudOptions{Args: append(slices.Clone(pipeCloudArgs), cloudArgs...)},
	})
	c.Leader()
	c.WaitSigningKeys()
	return c
}

// ---------------------------------------------------------------------------
// Submissions

// pipeSpec is one task to submit.
type pipeSpec struct {
	index                   int
	key, user, size, prompt string
}

// pipeRun is one test's tasks: what was submitted, what became of it.
type pipeRun struct {
	t *testing.T
	c *e2e.Cluster

	mu  sync.Mutex
	ids map[int]string // spec index → task id

	attempts, retried, replayed atomic.Int64
	began                       time.Time
}

func newPipeRun(t *testing.T, c *e2e.Cluster) *pipeRun {
	return &pipeRun{t: t, c: c, ids: map[int]string{}, began: time.Now()}
}

// specs makes tasks [from, to): users round-robin, sizes round-robin on
// another cycle, so that every user has tasks of every size.
func (r *pipeRun) specs(from, to int) []pipeSpec {
	var out []pipeSpec
	for i := from; i < to; i++ {
		out = append(out, pipeSpec{
			index:  i,
			key:    fmt.Sprintf("pipe-%s-%03d", r.t.Name(), i),
			user:   fmt.Sprintf("user%02d", i%pipeUsers),
			size:   pipeSizes[(i/pipeUsers)%len(pipeSizes)],
			prompt: fmt.Sprintf("pipeline task %03d", i),
		})
	}
	return out
}

// submitAll submits the specs with the given number of workers, starting
// one submission every pace (0: as fast as the workers go), task i going
// first to targets[i%len(targets)].
func (r *pipeRun) submitAll(specs []pipeSpec, workers int, pace time.Duration, targets []*e2e.Node) error {
	next := make(chan pipeSpec)
	errs := make(chan error, len(specs))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				if err := r.submit(s, targets); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, s := range specs {
		next <- s
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		return fmt.Errorf("%d submissions failed:\n%s", len(all), strings.Join(all, "\n"))
	}
	return nil
}

// submit posts one task until a node accepts it. A 5xx (no leader, a
// forward that failed) or a transport error (the node died: unknown
// outcome) is retried with the same Idempotency-Key on the next node; any
// other answer is an error.
func (r *pipeRun) submit(s pipeSpec, targets []*e2e.Node) error {
	body := map[string]string{
		"project_id": "p-pipeline",
		"user_id":    s.user,
		"prompt":     s.prompt,
		"repository": "github.com/acme/app",
		"vm_size":    s.size,
	}
	hdr := http.Header{"Idempotency-Key": {s.key}}
	deadline := time.Now().Add(90 * time.Second)
	backoff := 100 * time.Millisecond
	var last string
	for attempt := 0; ; attempt++ {
		n := targets[(s.index+attempt)%len(targets)]
		r.attempts.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), r.c.Client.Timeout)
		resp, err := r.c.Do(ctx, n, http.MethodPost, "/v1/tasks", hdr, body)
		cancel()
		switch {
		case err != nil:
			last = fmt.Sprintf("POST %s/v1/tasks: %v", n.ID, err)
		case resp.Status >= 500:
			last = fmt.Sprintf("POST %s/v1/tasks = %d: %s", n.ID, resp.Status, resp.Body)
		case resp.Status == http.StatusAccepted:
			var got struct {
				Task pipeTask `json:"task"`
			}
			if err := json.Unmarshal(resp.Body, &got); err != nil || got.Task.ID == "" {
				return fmt.Errorf("task %d: POST %s/v1/tasks: 202 answer %q: %v", s.index, n.ID, resp.Body, err)
			}
			if got.Task.Prompt != s.prompt || got.Task.UserID != s.user || got.Task.VMSize != s.size && got.Task.VMSize != "" {
				return fmt.Errorf("task %d (key %s): answered with task %s of prompt %q user %q size %q", s.index, s.key, got.Task.ID, got.Task.Prompt, got.Task.UserID, got.Task.VMSize)
			}
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				r.replayed.Add(1)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			for i, id := range r.ids {
				if id == got.Task.ID && i != s.index {
					return fmt.Errorf("tasks %d and %d were both answered with task %s", i, s.index, id)
				}
			}
			r.ids[s.index] = got.Task.ID
			return nil
		default:
			return fmt.Errorf("task %d: POST %s/v1/tasks (key %s, attempt %d) = %d: %s", s.index, n.ID, s.key, attempt+1, resp.Status, resp.Body)
		}
		r.retried.Add(1)
		if err := r.c.Crashed(); err != nil {
			return fmt.Errorf("task %d: %w", s.index, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %d (key %s) not accepted within 90s (%d attempts); last: %s", s.index, s.key, attempt+1, last)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

func (r *pipeRun) taskIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for i, id := range r.ids {
		out[id] = i
	}
	return out
}

// anyWorkspace returns the workspace id the first submitted task will get
// (ids are derived from the task's: t-X → ws-X).
func (r *pipeRun) anyWorkspace() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "ws" + strings.TrimPrefix(r.ids[0], "t")
}

func (r *pipeRun) logStats() {
	r.t.Helper()
	r.t.Logf("submissions: %d accepted in %d requests (%d retried, %d answered as replays)",
		len(r.taskIDs()), r.attempts.Load(), r.retried.Load(), r.replayed.Load())
}

// logProgress logs a line with how far the tasks have got (best effort).
func (r *pipeRun) logProgress(what string) {
	r.t.Helper()
	tasks, _, err := r.readTasks()
	if err != nil {
		r.t.Logf("%s (t+%s; tasks: %v)", what, time.Since(r.began).Round(time.Millisecond), err)
		return
	}
	r.t.Logf("%s (t+%s; tasks: %s)", what, time.Since(r.began).Round(time.Millisecond), summarize(tasks))
}

// logInterrupted logs how many step attempts the kills cut short (claimed
// by one leader, never finished, and run again by the next).
func (r *pipeRun) logInterrupted() {
	r.t.Helper()
	tasks, _, err := r.readTasks()
	if err != nil {
		r.t.Logf("interrupted steps: %v", err)
		return
	}
	cut := map[string]int{}
	for _, tk := range tasks {
		for _, s := range tk.Steps {
			if s.Finished == nil {
				cut[s.Step]++
			}
		}
	}
	r.t.Logf("step attempts cut short by a kill and run again: %v", cut)
}

// ---------------------------------------------------------------------------
// Reading the cluster's state

// pipeTask is the part of a task (GET /v1/tasks) the tests check.
type pipeTask struct {
	ID             string `json:"id"`
	UserID         string `json:"user_id"`
	Prompt         string `json:"prompt"`
	VMSize         string `json:"vm_size"`
	Status         string `json:"status"`
	Step           string `json:"execution_step"`
	NodeID         string `json:"node_id"`
	WorkspaceID    string `json:"workspace_id"`
	AgentSessionID string `json:"agent_session_id"`
	ErrorMessage   string `json:"error_message"`
	History        []struct {
		From   string `json:"from"`
		To     string `json:"to"`
		Reason string `json:"reason"`
	} `json:"history"`
	Steps []struct {
		Step     string     `json:"step"`
		Attempt  int        `json:"attempt"`
		Leader   string     `json:"leader"`
		Outcome  string     `json:"outcome"`
		Error    string     `json:"error"`
		Note     string     `json:"note"`
		Started  time.Time  `json:"started"`
		Finished *time.Time `json:"finished"`
	} `json:"steps"`
	Cleanup string `json:"cleanup"` // "pending" until the run's cleanup ran
}

// pipeNode is the part of a node (GET /v1/nodes) the tests check.
type pipeNode struct {
	ID         string `json:"id"`
	UserID     string `json:"user_id"`
	Status     string `json:"status"`
	ServerID   int64  `json:"server_id"`
	ServerName string `json:"server_name"`
	Size       string `json:"size"`
	TaskID     string `json:"task_id"`
}

// readTasks lists every task (paging through GET /v1/tasks) from the first
// live node that answers.
func (r *pipeRun) readTasks() ([]pipeTask, *e2e.Node, error) {
	var errs []string
	for _, n := range r.c.Live() {
		tasks, err := r.listTasks(n)
		if err == nil {
			return tasks, n, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, nil, fmt.Errorf("no node lists the tasks: %s", strings.Join(errs, "; "))
}

func (r *pipeRun) listTasks(n *e2e.Node) ([]pipeTask, error) {
	var out []pipeTask
	cursor := ""
	for page := 0; page < 50; page++ {
		path := "/v1/tasks?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var got struct {
			Tasks      []pipeTask `json:"tasks"`
			NextCursor string     `json:"next_cursor"`
		}
		if err := r.c.GetJSON(n, path, &got); err != nil {
			return nil, err
		}
		out = append(out, got.Tasks...)
		if got.NextCursor == "" || got.NextCursor == cursor {
			return out, nil
		}
		cursor = got.NextCursor
	}
	return nil, fmt.Errorf("%s: more than 50 pages of tasks", n.ID)
}

func (r *pipeRun) readNodes(n *e2e.Node) ([]pipeNode, error) {
	var got struct {
		Nodes []pipeNode `json:"nodes"`
	}
	err := r.c.GetJSON(n, "/v1/nodes", &got)
	return got.Nodes, err
}

// summarize counts tasks by status and step.
func summarize(tasks []pipeTask) string {
	counts := map[string]int{}
	for _, tk := range tasks {
		k := tk.Status
		if tk.Step != "" {
			k += "/" + tk.Step
		}
		if tk.Cleanup == "pending" {
			k += "/cleanup"
		}
		counts[k]++
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	return strings.Join(parts, " ")
}

// waitCompleted waits until every submitted task is completed (and listed
// with nothing more to clean up). A task that fails or is cancelled fails
// the test at once, and so does a run that makes no progress for
// pipeStallWait: with the short timers, no task may rest that long in one
// step. On failure it lists the tasks that did not finish, with what the
// ledger says of them.
func (r *pipeRun) waitCompleted(timeout time.Duration) {
	r.t.Helper()
	want := r.taskIDs()
	start := time.Now()
	prog := newProgress(start, timeout)
	for {
		if err := r.c.Crashed(); err != nil {
			r.t.Fatalf("waiting for %d tasks to complete: %v", len(want), err)
		}
		tasks, n, err := r.readTasks()
		var pending []pipeTask
		var state strings.Builder
		if err == nil {
			seen := 0
			for _, tk := range tasks {
				if _, ok := want[tk.ID]; !ok {
					continue
				}
				seen++
				fmt.Fprintf(&state, "%s:%s:%s:%v ", tk.ID, tk.Status, tk.Step, tk.Cleanup)
				switch {
				case tk.Status == "failed" || tk.Status == "cancelled":
					r.t.Fatalf("task %s (submission %d) is %s on %s: %q; history %+v; steps %+v", tk.ID, want[tk.ID], tk.Status, n.ID, tk.ErrorMessage, tk.History, tk.Steps)
				case tk.Status != "completed" || tk.Cleanup == "pending":
					pending = append(pending, tk)
				}
			}
			if seen == len(want) && len(pending) == 0 {
				r.t.Logf("%d tasks completed (waited %s)", len(want), time.Since(start).Round(time.Millisecond))
				return
			}
			err = fmt.Errorf("%s lists %d of the %d tasks, %d not done: %s", n.ID, seen, len(want), len(pending)+len(want)-seen, summarize(tasks))
		}
		r.failIfStuck(prog, state.String(), pending, fmt.Sprintf("%d tasks complete", len(want)), err)
		time.Sleep(pipeListEvery)
	}
}

// progress tells a wedged run from a slow one while a wait polls the
// tasks: it notes when their listed states last changed.
type progress struct {
	deadline, lastChange time.Time
	timeout              time.Duration
	lastState            string
}

func newProgress(start time.Time, timeout time.Duration) *progress {
	return &progress{deadline: start.Add(timeout), lastChange: start, timeout: timeout}
}

// failIfStuck records this round's state and fails the test, describing
// the pending tasks, when the deadline has passed or nothing changed for
// pipeStallWait.
func (r *pipeRun) failIfStuck(p *progress, state string, pending []pipeTask, what string, err error) {
	r.t.Helper()
	now := time.Now()
	if state != p.lastState {
		p.lastChange, p.lastState = now, state
	}
	stalled := now.Sub(p.lastChange) > pipeStallWait
	if !now.After(p.deadline) && !stalled {
		return
	}
	r.describe(pending)
	why := fmt.Sprintf("not reached within %s", p.timeout)
	if stalled {
		why = fmt.Sprintf("no progress for %s", pipeStallWait)
	}
	r.t.Fatalf("%s: %s: %v", what, why, err)
}

// describe logs unfinished tasks and the ledger's events about them.
func (r *pipeRun) describe(pending []pipeTask) {
	r.t.Helper()
	events, err := r.c.Ledger()
	if err != nil {
		r.t.Logf("ledger: %v", err)
	}
	for i, tk := range pending {
		if i == 10 {
			r.t.Logf("… and %d more", len(pending)-i)
			break
		}
		var seen []string
		for _, e := range events {
			if e.TaskID == tk.ID || (e.WorkspaceID != "" && e.WorkspaceID == tk.WorkspaceID) ||
				(tk.NodeID != "" && e.Name == "node-"+tk.NodeID) {
				seen = append(seen, fmt.Sprintf("%s@%s", e.Kind, e.Time.Format("15:04:05.000")))
			}
		}
		r.t.Logf("not done: task %s %s/%s cleanup=%v node %s workspace %s session %s; steps %+v; history %+v; ledger %v",
			tk.ID, tk.Status, tk.Step, tk.Cleanup, tk.NodeID, tk.WorkspaceID, tk.AgentSessionID, tk.Steps, tk.History, seen)
	}
}

// ---------------------------------------------------------------------------
// The invariants

// checkEnd waits until every node is deleted and the fakecloud holds no
// server, then checks every task, every node and the ledger against each
// other.
func (r *pipeRun) checkEnd() (selections map[string]int, servers int) {
	r.t.Helper()
	t := r.t
	nodes, events := r.drain()
	tasks, err := r.listTasks(r.c.Leader())
	if err != nil {
		t.Fatal(err)
	}
	selections = checkTasks(t, r.taskIDs(), tasks)
	checkLedger(t, tasks, nodes, events)
	for _, e := range events {
		if e.Kind == "server_create" {
			servers++
		}
	}
	return selections, servers
}

// drain waits until every node is deleted and the fakecloud holds no
// server, and returns the leader's nodes and the ledger.
func (r *pipeRun) drain() ([]pipeNode, []e2e.LedgerEvent) {
	r.t.Helper()
	t, c := r.t, r.c
	start := time.Now()
	c.WaitForEvery(pipeDrainWait, pipeListEvery, "every node deleted and no server left", func() error {
		servers, err := c.FakeServers()
		if err != nil {
			return err
		}
		var left []string
		for _, n := range c.Live() {
			nodes, err := r.readNodes(n)
			if err != nil {
				return err
			}
			for _, nd := range nodes {
				if nd.Status != "deleted" {
					left = append(left, fmt.Sprintf("%s: %s is %s", n.ID, nd.ID, nd.Status))
				}
			}
		}
		if len(servers) > 0 || len(left) > 0 {
			var names []string
			for _, s := range servers {
				names = append(names, s.Name+"("+s.Status+")")
			}
			return fmt.Errorf("%d servers left %v; nodes not deleted: %v", len(servers), firstFew(names), firstFew(left))
		}
		return nil
	})
	t.Logf("every node deleted and no server left (waited %s)", time.Since(start).Round(time.Millisecond))
	nodes, err := r.readNodes(c.Leader())
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	return nodes, events
}

// wantHistory is the one path of a task that runs through.
var wantHistory = []string{"queued", "delegated", "in_progress", "completed"}

// checkTasks checks that the cluster holds exactly the submitted tasks,
// each completed along wantHistory, with every step succeeding at most
// once and each of its pipeline's effect steps exactly once.
func checkTasks(t *testing.T, want map[string]int, tasks []pipeTask) map[string]int {
	t.Helper()
	if len(tasks) != len(want) {
		t.Errorf("the cluster holds %d tasks, %d were submitted", len(tasks), len(want))
	}
	reasons := map[string]int{}
	for _, tk := range tasks {
		if _, ok := want[tk.ID]; !ok {
			t.Errorf("task %s was never submitted", tk.ID)
			continue
		}
		var path []string
		for _, h := range tk.History {
			path = append(path, h.To)
		}
		if !slices.Equal(path, wantHistory) {
			t.Errorf("task %s: history %v, want %v (each status once)", tk.ID, path, wantHistory)
		}
		if tk.Status != "completed" || tk.NodeID == "" || tk.WorkspaceID == "" || tk.AgentSessionID == "" {
			t.Errorf("task %s: status %s, node %q, workspace %q, session %q; want completed with all three", tk.ID, tk.Status, tk.NodeID, tk.WorkspaceID, tk.AgentSessionID)
		}
		succeeded := map[string]int{}
		for _, s := range tk.Steps {
			if s.Outcome == "success" {
				succeeded[s.Step]++
			}
			if s.Step == "node_selection" {
				reasons[selectionReason(cmp.Or(s.Note, s.Error))]++
			}
		}
		for step, n := range succeeded {
			if n > 1 {
				t.Errorf("task %s: step %s succeeded %d times; steps %+v", tk.ID, step, n, tk.Steps)
			}
		}
		for _, step := range []string{"node_selection", "node_agent_ready", "workspace_creation", "agent_session", "cleanup"} {
			if succeeded[step] != 1 {
				t.Errorf("task %s: step %s succeeded %d times, want once; steps %+v", tk.ID, step, succeeded[step], tk.Steps)
			}
		}
	}
	t.Logf("node selections: %v", reasons)
	return reasons
}

// checkLedger checks the fakecloud's record of effects against the
// cluster's tasks and nodes: one server per node, created and deleted once;
// one workspace per task, created once, on the task's node; one session per
// task, created once, in the task's workspace.
func checkLedger(t *testing.T, tasks []pipeTask, nodes []pipeNode, events []e2e.LedgerEvent) {
	t.Helper()
	byKind := map[string][]e2e.LedgerEvent{}
	for _, e := range events {
		byKind[e.Kind] = append(byKind[e.Kind], e)
	}
	counts := func(kind string, key func(e2e.LedgerEvent) string) map[string]int {
		m := map[string]int{}
		for _, e := range byKind[kind] {
			m[key(e)]++
		}
		return m
	}
	created := counts("server_create", func(e e2e.LedgerEvent) string { return e.Name })
	deleted := counts("server_delete", func(e e2e.LedgerEvent) string { return e.Name })
	wsCreated := counts("workspace_create", func(e e2e.LedgerEvent) string { return e.WorkspaceID })
	sessCreated := counts("session_create", func(e e2e.LedgerEvent) string { return e.SessionID })

	// Servers and nodes.
	nodeByName := map[string]pipeNode{}
	for _, n := range nodes {
		if n.ServerName == "" {
			t.Errorf("node %s (%s) has no server name", n.ID, n.Status)
			continue
		}
		nodeByName[n.ServerName] = n
		if created[n.ServerName] != 1 || deleted[n.ServerName] != 1 {
			t.Errorf("node %s: server %s created %d times and deleted %d times, want once each", n.ID, n.ServerName, created[n.ServerName], deleted[n.ServerName])
		}
	}
	for name, n := range created {
		if _, ok := nodeByName[name]; !ok {
			t.Errorf("server %s (created %d times) belongs to no node", name, n)
		}
	}

	// Workspaces and sessions.
	wsOfTask := map[string]map[string]bool{}
	wsEvent := map[string]e2e.LedgerEvent{}
	for _, e := range byKind["workspace_create"] {
		if wsOfTask[e.TaskID] == nil {
			wsOfTask[e.TaskID] = map[string]bool{}
		}
		wsOfTask[e.TaskID][e.WorkspaceID] = true
		wsEvent[e.WorkspaceID] = e
	}
	sessOfWS := map[string]map[string]bool{}
	for _, e := range byKind["session_create"] {
		if sessOfWS[e.WorkspaceID] == nil {
			sessOfWS[e.WorkspaceID] = map[string]bool{}
		}
		sessOfWS[e.WorkspaceID][e.SessionID] = true
	}
	for id, n := range wsCreated {
		if n != 1 {
			t.Errorf("workspace %s created %d times", id, n)
		}
	}
	for id, n := range sessCreated {
		if n != 1 {
			t.Errorf("session %s created %d times", id, n)
		}
	}
	taskByWS := map[string]string{}
	for _, tk := range tasks {
		if prev, dup := taskByWS[tk.WorkspaceID]; dup && tk.WorkspaceID != "" {
			t.Errorf("tasks %s and %s share workspace %s", prev, tk.ID, tk.WorkspaceID)
		}
		taskByWS[tk.WorkspaceID] = tk.ID
		if ws := wsOfTask[tk.ID]; len(ws) != 1 || !ws[tk.WorkspaceID] {
			t.Errorf("task %s (workspace %s): the agents created workspaces %v for it, want exactly its own", tk.ID, tk.WorkspaceID, keys(ws))
		}
		if e, ok := wsEvent[tk.WorkspaceID]; ok && e.NodeID != tk.NodeID {
			t.Errorf("task %s: workspace %s was created on node %s, the task ran on %s", tk.ID, tk.WorkspaceID, e.NodeID, tk.NodeID)
		}
		if s := sessOfWS[tk.WorkspaceID]; len(s) != 1 || !s[tk.AgentSessionID] {
			t.Errorf("task %s (workspace %s, session %s): the agents created sessions %v in its workspace, want exactly its own", tk.ID, tk.WorkspaceID, tk.AgentSessionID, keys(s))
		}
	}
	for ws, e := range wsEvent {
		if _, ok := taskByWS[ws]; !ok {
			t.Errorf("workspace %s (task %s) belongs to no task", ws, e.TaskID)
		}
	}
	if len(byKind["workspace_create"]) != len(tasks) || len(byKind["session_create"]) != len(tasks) {
		t.Errorf("ledger: %d workspace_create and %d session_create events for %d tasks, want one each per task",
			len(byKind["workspace_create"]), len(byKind["session_create"]), len(tasks))
	}
	kinds := map[string]int{}
	for k, es := range byKind {
		kinds[k] = len(es)
	}
	t.Logf("ledger: %d tasks, %d nodes, events %v", len(tasks), len(nodes), kinds)
}

// selectionReason is the kind of a node_selection's note ("warm node
// claimed: n-…", "provisioning new node n-…").
func selectionReason(note string) string {
	if strings.HasPrefix(note, "provisioning new node") {
		return "provisioning new node"
	}
	return strings.SplitN(note, ":", 2)[0]
}

func firstFew(s []string) []string { return s[:min(len(s), 5)] }

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// Secrets

// forgedJWT returns a token shaped like the cluster's (RS256 header,
// claims, signature) that no key of the cluster signed.
func forgedJWT() string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	sig := make([]byte, 256)
	for i := range sig {
		sig[i] = byte(rand.IntN(256))
	}
	return enc(`{"alg":"RS256","typ":"JWT","kid":"forged"}`) + "." +
		enc(fmt.Sprintf(`{"iss":"e2e","sub":"ws-forged","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "." +
		base64.RawURLEncoding.EncodeToString(sig)
}

// redact shows a log line with the secret found in it cut short, so that
// the test's own output does not spread it.
func redact(line string, loc []int) string {
	end := min(loc[0]+6, loc[1])
	out := line[:end] + "…[redacted]" + line[loc[1]:]
	if len(out) > 300 {
		out = out[:300] + "…"
	}
	return out
}
