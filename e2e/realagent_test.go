package e2e_test

// Tasks run through the real VM agent (the unmodified program that runs on
// every VM in the field), booted by the fakecloud for each server from the
// user data tdf sent, in a read-only sandbox, with a fake coding agent
// (`tdf fake-acp`) in place of the model. The agent clones from, and
// pushes to, a git server on loopback, and calls back through one URL in
// front of the cluster, which records every answer it got.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/vmagent/fakeacp"
)

// realServerArgs are the servers' flags for real agents: short timers,
// and one workspace a node (standalone, the agent works in one directory).
var realServerArgs = []string{
	"--session-idle-timeout", "3s",
	"--node-warm-timeout", "3s",
	"--provisioning-poll-interval", "300ms",
	"--agent-ready-poll-interval", "300ms",
	"--node-ready-grace", "10s",
	"--retry-base-delay", "500ms",
	"--retry-max-delay", "3s",
	"--max-workspaces-per-node", "1",
	"--max-nodes-per-user", "50",
}

// realWorld is a cluster whose servers boot real agents.
type realWorld struct {
	t     *testing.T
	c     *e2e.Cluster
	front *e2e.Front
	git   *e2e.GitServer
	repo  string
	log   string
}

func startRealWorld(t *testing.T, role string) *realWorld {
	t.Helper()
	agent := e2e.NeedRealAgent(t)
	w := &realWorld{t: t, git: e2e.StartGitServer(t), front: e2e.StartFront(t)}
	w.repo = w.git.NewRepo("app.git")
	w.log = filepath.Join(t.TempDir(), "agents.log")
	if keep := os.Getenv("TDF_E2E_LOG_DIR"); keep != "" {
		w.log = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-agents.log")
	}
	// One keyring for the three nodes: the credentials are sealed with it.
	ring, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ringFile := filepath.Join(t.TempDir(), "keyring.json")
	if err := ring.Save(ringFile); err != nil {
		t.Fatal(err)
	}
	// The servers' cloud-init downloads the agent and checks its SHA-256,
	// as on a stock image; the fake cloud boots what it downloads.
	binURL, binSum := serveFile(t, agent.Binary)
	w.c = e2e.StartCluster(t, e2e.Options{
		ControlPlaneURL: w.front.URL,
		ExtraArgs: append([]string{"--keyring-file", ringFile, "--agent-binary-url", binURL, "--agent-binary-sha256", binSum},
			realServerArgs...),
		FakeCloud: &e2e.FakeCloudOptions{Args: agent.CloudArgs(role, w.log)},
	})
	var urls []string
	for _, n := range w.c.Nodes {
		urls = append(urls, n.URL)
	}
	if err := w.front.SetBackends(urls...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("real agents' log (last lines):\n%s", e2e.Tail(w.log, 60))
		}
	})
	w.c.Leader()
	w.c.WaitSigningKeys()
	setRealCredentials(t, w.c)
	return w
}

// serveFile serves one file over HTTP until the test ends and returns its
// URL and SHA-256.
func serveFile(t *testing.T, path string) (url, sum string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/vm-agent", hex.EncodeToString(h[:])
}

// realTask is what the test reads of a task.
type realTask struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Step         string `json:"execution_step"`
	ErrorMessage string `json:"error_message"`
	Output       struct {
		Branch string `json:"branch"`
	} `json:"output"`
}

func (w *realWorld) submit(i int, prompt string) string {
	w.t.Helper()
	body := map[string]any{"project_id": "p1", "user_id": fmt.Sprintf("u%d", i%5), "prompt": prompt, "repository": w.repo, "branch": "main"}
	hdr := http.Header{"Idempotency-Key": {fmt.Sprintf("real-%d", i)}}
	var id string
	w.c.WaitFor(time.Minute, "submit "+prompt, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := w.c.Do(ctx, w.c.Nodes[i%len(w.c.Nodes)], http.MethodPost, "/v1/tasks", hdr, body)
		if err != nil {
			return err
		}
		if resp.Status != http.StatusAccepted {
			return fmt.Errorf("submit = %d: %s", resp.Status, resp.Body)
		}
		var out struct{ Task realTask }
		if err := json.Unmarshal(resp.Body, &out); err != nil {
			return err
		}
		id = out.Task.ID
		return nil
	})
	return id
}

// tasks reads every task from a live node.
func (w *realWorld) tasks(ids []string) (map[string]realTask, error) {
	out := map[string]realTask{}
	for _, id := range ids {
		var r struct{ Task realTask }
		var err error
		for _, n := range w.c.Live() {
			if err = w.c.GetJSON(n, "/v1/tasks/"+id, &r); err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		out[id] = r.Task
	}
	return out, nil
}

// waitTerminal waits until every task has ended, and returns them.
func (w *realWorld) waitTerminal(ids []string, timeout time.Duration) map[string]realTask {
	w.t.Helper()
	var last map[string]realTask
	w.c.WaitFor(timeout, fmt.Sprintf("%d tasks to end", len(ids)), func() error {
		got, err := w.tasks(ids)
		if err != nil {
			return err
		}
		last = got
		var open []string
		for _, id := range ids {
			switch got[id].Status {
			case "completed", "failed", "cancelled":
			default:
				open = append(open, id+" "+got[id].Status+"/"+got[id].Step)
			}
		}
		if len(open) > 0 {
			sort.Strings(open)
			return fmt.Errorf("%d open: %s", len(open), strings.Join(open[:min(len(open), 5)], ", "))
		}
		return nil
	})
	return last
}

// waitNoServers waits until every server is deleted.
func (w *realWorld) waitNoServers(timeout time.Duration) {
	w.t.Helper()
	w.c.WaitFor(timeout, "every server deleted", func() error {
		servers, err := w.c.FakeServers()
		if err != nil {
			return err
		}
		if len(servers) > 0 {
			return fmt.Errorf("%d servers left, such as %s (%s)", len(servers), servers[0].Name, servers[0].Status)
		}
		return nil
	})
}

// refused lists the agents' requests the control plane answered with
// 401, 403, 404 or a 5xx, and counts every request by path.
func (w *realWorld) refused() (bad []e2e.FrontRecord, byPath map[string]int) {
	byPath = map[string]int{}
	for _, r := range w.front.Records() {
		byPath[r.Method+" "+routeOf(r.Path)]++
		if r.Status == 401 || r.Status == 403 || r.Status == 404 || r.Status >= 500 {
			bad = append(bad, r)
		}
	}
	return bad, byPath
}

// routeOf replaces the ids in a callback path with placeholders.
func routeOf(path string) string {
	parts := strings.Split(path, "/")
	for i := range parts {
		if i > 0 && (parts[i-1] == "nodes" || parts[i-1] == "workspaces" || parts[i-1] == "tasks" || parts[i-1] == "projects" ||
			parts[i-1] == "acp-sessions" || parts[i-1] == "diagnostic-incidents") {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

func (w *realWorld) logRequests(byPath map[string]int) {
	var lines []string
	for p, n := range byPath {
		lines = append(lines, fmt.Sprintf("%6d  %s", n, p))
	}
	sort.Strings(lines)
	w.t.Logf("the agents' requests to the control plane:\n%s", strings.Join(lines, "\n"))
}

// TestRealAgentTasks runs 20 tasks through real agents in two waves and
// kills the leader between them, while the first wave's agents work and
// call back and the second wave is submitted; it checks every task
// completed with its work pushed, every server was deleted, and no agent
// request was refused.
//
// The kill comes once the first wave's workspaces exist: a standalone
// agent clones the repository within the create call, and a leader that
// dies in that call cuts the clone off. tdf then re-creates the workspace
// (TestWorkspaceFailureDuringCreationIsRedone), but the standalone agent,
// made for a one-workspace container, finds its half-cloned directory and
// keeps it; VM-mode agents, which create workspaces in the background,
// have no such window.
func TestRealAgentTasks(t *testing.T) {
	w := startRealWorld(t, "standalone")
	const tasks = 20
	ids := make([]string, tasks)
	submitWave := func(from, to int) *sync.WaitGroup {
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = w.submit(i, fmt.Sprintf("Task %d: write the release notes", i))
			}()
		}
		return &wg
	}
	submitWave(0, tasks/2).Wait()
	w.c.WaitFor(4*time.Minute, "the first wave past workspace creation", func() error {
		got, err := w.tasks(ids[:tasks/2])
		if err != nil {
			return err
		}
		for id, tk := range got {
			switch {
			case tk.Status == "failed" || tk.Status == "cancelled":
				return fmt.Errorf("task %s %s: %s", id, tk.Status, tk.ErrorMessage) // waitTerminal reports it
			case tk.Step == "node_selection" || tk.Step == "node_provisioning" || tk.Step == "node_agent_ready" ||
				tk.Step == "workspace_creation" || tk.Status == "queued":
				return fmt.Errorf("task %s at %s/%s", id, tk.Status, tk.Step)
			}
		}
		return nil
	})
	leader := w.c.Leader()
	w.c.Kill(leader)
	wave2 := submitWave(tasks/2, tasks)
	w.c.Start(leader)
	wave2.Wait()
	got := w.waitTerminal(ids, 6*time.Minute)
	for _, id := range ids {
		if tk := got[id]; tk.Status != "completed" {
			t.Errorf("task %s ended %s: %s", id, tk.Status, tk.ErrorMessage)
		}
	}
	w.waitNoServers(2 * time.Minute)
	w.checkAgentsNeverFailed()
	branches, err := w.git.Branches("app.git")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if b := got[id].Output.Branch; b == "" || branches[b] == "" {
			t.Errorf("task %s: output branch %q not pushed (branches: %d)", id, b, len(branches))
		}
	}
	bad, byPath := w.refused()
	w.logRequests(byPath)
	for _, r := range bad {
		t.Errorf("agent request %s %s answered %d", r.Method, r.Path, r.Status)
	}
	w.checkSecretsKept(ids)
}

// checkAgentsNeverFailed: no agent failed to boot or exited and was
// restarted while its server ran.
func (w *realWorld) checkAgentsNeverFailed() {
	w.t.Helper()
	events, err := w.c.Ledger()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, e := range events {
		if e.Kind == fakeworld.EventAgentRestarted || e.Kind == "agent_boot_failed" {
			w.t.Errorf("agent of %s: %s: %s", e.Name, e.Kind, e.Detail)
		}
	}
}

// checkSecretsKept: the credentials the agents were handed appear in no
// node's log, no file of its data directory (raft log, snapshots) and no
// API answer but the hand-outs themselves.
func (w *realWorld) checkSecretsKept(ids []string) {
	w.t.Helper()
	secrets := []string{realGitToken, realAgentKey}
	files := w.c.LogPaths()
	for _, n := range w.c.Nodes {
		_ = filepath.WalkDir(n.DataDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			w.t.Errorf("read %s: %v", f, err)
			continue
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				w.t.Errorf("a credential is in clear text in %s", f)
			}
		}
	}
	paths := []string{"/v1/credentials", "/v1/errors", "/v1/nodes", "/v1/tasks"}
	for _, id := range ids {
		paths = append(paths, "/v1/tasks/"+id, "/v1/tasks/"+id+"/messages")
	}
	leader := w.c.Leader()
	for _, p := range paths {
		resp, err := w.c.Do(context.Background(), leader, http.MethodGet, p, nil, nil)
		if err != nil || resp.Status != http.StatusOK {
			w.t.Errorf("GET %s: %v %v", p, err, resp)
			continue
		}
		for _, s := range secrets {
			if strings.Contains(string(resp.Body), s) {
				w.t.Errorf("GET %s answers a credential in clear text", p)
			}
		}
	}
	w.t.Logf("no credential in %d files (logs, raft logs, snapshots) or %d API answers", len(files), len(paths))
}

// TestRealAgentFailures: a prompt the coding agent fails, and a workspace
// the agent cannot provision (VM mode offline: no docker, no
// devcontainer), each end the task failed with the agent's reason, and
// the servers are deleted.
func TestRealAgentFailures(t *testing.T) {
	t.Run("prompt", func(t *testing.T) {
		w := startRealWorld(t, "standalone")
		id := w.submit(0, "Please "+fakeacp.FailMarker+" this task")
		tk := w.waitTerminal([]string{id}, 4*time.Minute)[id]
		if tk.Status != "failed" || !strings.Contains(tk.ErrorMessage, "fail") {
			t.Errorf("task ended %s with %q, want failed with the agent's reason", tk.Status, tk.ErrorMessage)
		}
		w.waitNoServers(2 * time.Minute)
		bad, byPath := w.refused()
		w.logRequests(byPath)
		for _, r := range bad {
			t.Errorf("agent request %s %s answered %d", r.Method, r.Path, r.Status)
		}
	})
	t.Run("workspace", func(t *testing.T) {
		w := startRealWorld(t, "vm")
		id := w.submit(0, "Build the devcontainer")
		tk := w.waitTerminal([]string{id}, 4*time.Minute)[id]
		if tk.Status != "failed" || tk.ErrorMessage == "" {
			t.Errorf("task ended %s with %q, want failed with the agent's reason", tk.Status, tk.ErrorMessage)
		}
		t.Logf("VM mode offline ends: %s", tk.ErrorMessage)
		w.waitNoServers(2 * time.Minute)
		bad, byPath := w.refused()
		w.logRequests(byPath)
		for _, r := range bad {
			t.Errorf("agent request %s %s answered %d", r.Method, r.Path, r.Status)
		}
	})
}

// setRealCredentials stores the project's git token and the coding
// agent's key, which the agent fetches (git-token, agent-key).
func setRealCredentials(t *testing.T, c *e2e.Cluster) {
	t.Helper()
	for path, body := range map[string]map[string]string{
		"/v1/credentials/git-token/project/p1":             {"secret": realGitToken},
		"/v1/credentials/agent-key/project/p1/claude-code": {"secret": realAgentKey},
	} {
		c.WaitFor(time.Minute, "PUT "+path, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := c.Do(ctx, c.Nodes[0], http.MethodPut, path, nil, body)
			if err != nil {
				return err
			}
			if resp.Status/100 != 2 {
				return fmt.Errorf("PUT %s = %d: %s", path, resp.Status, resp.Body)
			}
			return nil
		})
	}
}

// The credentials the agents are handed: made up, and looked for in
// logs by the secrets tests.
const (
	realGitToken = "ghs_realAgentTestGitToken0123456789"
	realAgentKey = "sk-ant-realAgentTestKey0123456789"
)
