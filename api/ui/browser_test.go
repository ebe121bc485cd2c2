package ui_test

// The dashboard in a real browser: headless Chromium (driven by chromedp)
// loads /ui/ from a follower of an in-process three-node cluster that runs
// the real pipeline handlers against the simulated world (fakeworld: the
// Hetzner-compatible fake and a simulated VM agent per server, on 127.x
// addresses). Tasks are submitted through the API; the test watches them
// appear and progress in the task list over the event stream, opens one
// task's timeline, and visits the nodes, errors and cluster views.
//
// The test is skipped when no Chromium is installed. With
// TDF_UPDATE_SCREENSHOT=1 it writes its mid-run screenshot of the task list
// to docs/dashboard.png. The other screenshots (and, without the variable,
// that one) go to $TDF_SCREENSHOT_DIR, or the test's temporary directory.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/vmagent/sim"
)

const (
	// browserBudget bounds everything the browser does, from its start.
	browserBudget = 90 * time.Second
	// screenshotEnv names the variable that makes the test update
	// docs/dashboard.png.
	screenshotEnv = "TDF_UPDATE_SCREENSHOT"
)

// chromium returns the browser to drive, or "" if there is none.
func chromium() string {
	if p := os.Getenv("TDF_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// needChromium returns the browser to drive; without one the test is
// skipped, and fails under CI=true.
func needChromium(t *testing.T) string {
	t.Helper()
	chrome := chromium()
	if chrome == "" {
		msg := "no Chromium found ($TDF_CHROMIUM, chromium, chromium-browser, google-chrome on $PATH, /usr/bin/chromium); " +
			"install one (apt-get install chromium) to run the dashboard's browser test"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true)")
		}
		t.Skip(msg)
	}
	return chrome
}

func TestDashboardInBrowser(t *testing.T) {
	chrome := needChromium(t)
	began := time.Now()
	c := startPipelineCluster(t)
	leader, followers := c.Followers()
	follower := followers[0]
	t.Logf("cluster up in %v: leader %s; the dashboard is loaded from follower %s (%s)", time.Since(began).Round(time.Millisecond), leader.ID, follower.ID, follower.URL)

	b := startBrowser(t, chrome)
	shots := os.Getenv("TDF_SCREENSHOT_DIR") // keeps them, e.g. as CI artifacts
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// "/" redirects to the dashboard; it connects to the event stream and
	// shows the cluster as the follower sees it.
	b.do("open the dashboard", chromedp.Navigate(follower.URL+"/"))
	b.wait("the dashboard to connect and name the leader", 20*time.Second, fmt.Sprintf(`(() => {
		const leader = document.querySelector('#strip-leader dd')?.textContent;
		const conn = document.querySelector('#conn')?.dataset.state;
		return { ok: location.pathname === '/ui/' && leader === %q && conn === 'live' && !!document.querySelector('#tasks-table'),
			state: { path: location.pathname, leader, conn } };
	})()`, leader.ID))

	submit := func(user, prompt, repo string, extra map[string]string) string {
		t.Helper()
		spec := map[string]string{"project_id": "acme", "user_id": user, "prompt": prompt, "repository": repo, "vm_size": "small"}
		for k, v := range extra {
			spec[k] = v
		}
		body, _ := json.Marshal(spec)
		r := c.Do(follower, http.MethodPost, "/v1/tasks", body, nil)
		if r.Status != http.StatusAccepted {
			t.Fatalf("submit for %s = %d %s", user, r.Status, r.Body)
		}
		var tr api.TaskResponse
		if err := json.Unmarshal(r.Body, &tr); err != nil {
			t.Fatal(err)
		}
		return tr.Task.ID
	}

	// A task ahead of the others (it has completed by the time of the
	// screenshot), then the task under test and one beside it.
	early := submit("zoe", "Triage the nightly build failures", "github.com/acme/ci", nil)
	b.wait("the first task to start running", 30*time.Second, fmt.Sprintf(`(() => {
		const s = document.querySelector('#task-rows tr[data-task-id=%q]')?.dataset.status;
		return { ok: s === 'in_progress' || s === 'completed', state: s };
	})()`, early))
	main := submit("alice", "Fix the flaky integration test in ./api and explain the race", "github.com/acme/shop", map[string]string{"branch": "main"})
	submit("bob", "Add cursor pagination to GET /v1/orders", "github.com/acme/orders", nil)
	// The list is read once; rows appear and change from the event stream.
	statusJS := fmt.Sprintf(`(() => {
		const row = document.querySelector('#task-rows tr[data-task-id=%q]');
		return { ok: !!row, state: row ? row.dataset.status : null };
	})()`, main)
	var seen []string
	note := func(raw json.RawMessage) {
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" && (len(seen) == 0 || seen[len(seen)-1] != s) {
			seen = append(seen, s)
		}
	}
	note(b.wait("the submitted task to appear in the list", 20*time.Second, statusJS))
	b.wait("the task to be delegated", 30*time.Second, fmt.Sprintf(`(() => {
		const row = document.querySelector('#task-rows tr[data-task-id=%q]');
		const s = row ? row.dataset.status : null;
		return { ok: s === 'delegated' || s === 'in_progress' || s === 'completed', state: s };
	})()`, main))

	// More tasks, so that the list shows several states at once: one
	// queued behind it, one that fails (a location the cloud does not
	// have), one cancelled.
	submit("carol", "Upgrade gin and fix the build", "github.com/acme/billing", nil)
	failing := submit("dave", "Bump the Go toolchain to 1.26", "github.com/acme/infra", map[string]string{"vm_location": "zz9"})
	cancelled := submit("erin", "Rewrite the README introduction", "github.com/acme/docs", nil)
	if r := c.Do(follower, http.MethodPost, "/v1/tasks/"+cancelled+"/cancel", []byte(`{"reason":"superseded by a newer request"}`), nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	// And one more once the first has completed, to be queued beside it.
	b.wait("the first task to complete", 30*time.Second, fmt.Sprintf(`(() => {
		const s = document.querySelector('#task-rows tr[data-task-id=%q]')?.dataset.status;
		return { ok: s === 'completed', state: s };
	})()`, early))
	last := submit("frank", "Document the retry policy of the step runner", "github.com/acme/tdf-docs", nil)

	// The mid-run screenshot: several states at once, the task under test
	// not finished yet. If the machine is too slow or too fast to catch
	// that, the screenshot is taken anyway: it is documentation, not a
	// check.
	if states, ok := b.try(20*time.Second, `(() => {
		const rows = [...document.querySelectorAll('#task-rows tr[data-status]')];
		const states = new Set(rows.map((r) => r.dataset.status));
		const live = ['queued', 'delegated', 'in_progress'].filter((s) => states.has(s)).length;
		return { ok: rows.length >= 7 && states.size >= 5 && states.has('completed') && live >= 2, state: [...states] };
	})()`); !ok {
		t.Logf("the list never showed five states, one completed and two in flight (it showed %s); taking the screenshot anyway", states)
	}
	listShot := filepath.Join(shots, "dashboard.png")
	if os.Getenv(screenshotEnv) != "" {
		listShot = filepath.Join("..", "..", "docs", "dashboard.png")
		if err := os.MkdirAll(filepath.Dir(listShot), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.screenshot(listShot, chromedp.Screenshot(chromedp.CSS("body")))

	// A task in flight: its diagram shows the step it is at, and grows.
	b.click("open a running task", fmt.Sprintf(`#task-rows a[href="#/tasks/%s"]`, last), "#/tasks/"+last)
	b.wait("the running task's diagram", 20*time.Second, `(() => {
		const states = [...document.querySelectorAll('#task-detail .step[data-step]')].map((s) => s.dataset.state);
		return { ok: states.length === 8 && states[0] === 'done' && states.some((s) => s === 'current' || s === 'waiting') || states.every((s) => s === 'done'), state: states };
	})()`)
	b.screenshot(filepath.Join(shots, "task-running.png"))
	b.click("go back to the list", `a.crumb`, "#/tasks")
	b.wait("the list", 10*time.Second, `({ ok: !!document.querySelector('#task-rows tr[data-task-id]'), state: location.hash })`)

	// The task progresses to completed live.
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, ok := b.try(0, statusJS)
		if ok {
			note(raw)
		}
		if len(seen) > 0 && seen[len(seen)-1] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			r := c.Do(leader, http.MethodGet, "/v1/tasks/"+main, nil, nil)
			t.Fatalf("the list never showed %s completed; it showed %v; the API says %s", main, seen, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every status came over the event stream, in order.
	var trail []string
	_ = json.Unmarshal(b.wait("the task's trail of events", 5*time.Second, fmt.Sprintf(`({ ok: true, state: window.tdf.trail(%q) })`, main)), &trail)
	t.Logf("the list showed %s as %s; its events brought %s; page counters %s", main, strings.Join(seen, " → "), strings.Join(trail, " → "),
		b.wait("the page's counters", 5*time.Second, `({ ok: true, state: window.tdf.stats })`))
	if want := []string{"queued", "delegated", "in_progress", "completed"}; !slices.Equal(trail, want) {
		t.Errorf("the event stream brought the statuses %v, want %v", trail, want)
	}
	if len(seen) < 2 {
		t.Errorf("the row went straight to %v: no progress was seen", seen)
	}

	// The status filter.
	b.do("filter the list by status", chromedp.SetValue(chromedp.CSS("#status-filter"), "failed"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#status-filter').dispatchEvent(new Event('change'))`))
	b.wait("only failed tasks", 10*time.Second, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#task-rows tr[data-task-id]')];
		return { ok: location.hash === '#/tasks?status=failed' && rows.length === 1 && rows[0].dataset.taskId === %q,
			state: { hash: location.hash, rows: rows.map((r) => r.dataset.taskId + ':' + r.dataset.status) } };
	})()`, failing))
	b.do("clear the filter", chromedp.SetValue(chromedp.CSS("#status-filter"), ""),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#status-filter').dispatchEvent(new Event('change'))`))

	// The timeline: the eight steps, each done, with attempts run by the
	// leader, the waiting steps spanning the time between, and the status
	// history.
	b.click("open the task", fmt.Sprintf(`#task-rows a[href="#/tasks/%s"]`, main), "#/tasks/"+main)
	detail := b.wait("the step diagram of the completed task", 20*time.Second, fmt.Sprintf(`(() => {
		const steps = [...document.querySelectorAll('#task-detail .step[data-step]')];
		const st = (s) => document.querySelector('#task-detail .step[data-step="' + s + '"]');
		const leaders = [...document.querySelectorAll('#task-detail [data-leader]')].map((e) => e.dataset.leader);
		const state = {
			title: document.querySelector('.title h2')?.textContent,
			steps: steps.map((s) => s.dataset.step + ':' + s.dataset.state),
			provisioned: !!st('node_provisioning')?.querySelector('li[data-outcome="success"]'),
			waited: !!st('workspace_ready')?.querySelector('.seg.wait'),
			leaders: [...new Set(leaders)],
			history: [...document.querySelectorAll('#history li')].map((li) => li.dataset.to + ':' + li.dataset.actor),
		};
		return { ok: state.title === %q && steps.length === 8 && steps.every((s) => s.dataset.state === 'done') &&
			state.provisioned && state.waited && state.leaders.includes(%q) && state.history.some((h) => h.startsWith('completed:')), state };
	})()`, main, leader.ID))
	t.Logf("timeline: %s", detail)
	// What the agent reported: its chat messages (the simulated agent
	// sends the prompt and an answer) and its push.
	reported := b.wait("the agent's messages and push result", 20*time.Second, `(() => {
		const roles = [...document.querySelectorAll('#messages li')].map((li) => li.dataset.role);
		const pushed = document.querySelector('#push')?.dataset.pushed;
		return { ok: roles.includes('user') && roles.includes('assistant') && pushed === 'yes' && !document.querySelector('#push-error'),
			state: { roles, pushed } };
	})()`)
	t.Logf("agent reports: %s", reported)
	b.screenshot(filepath.Join(shots, "task.png"), chromedp.FullScreenshot(100))

	// Nodes: the task's node, with its health, and its warm timer once the
	// task has released it.
	var task api.TaskResponse
	if r := c.Do(leader, http.MethodGet, "/v1/tasks/"+main, nil, nil); json.Unmarshal(r.Body, &task) != nil || task.Task.NodeID == "" {
		t.Fatalf("GET task = %d %s", r.Status, r.Body)
	}
	b.click("open the nodes", `nav a[data-view="nodes"]`, "#/nodes")
	b.wait("the task's node, warm, with its warm timer", 30*time.Second, fmt.Sprintf(`(() => {
		const row = document.querySelector('#nodes-table tr[data-node-id=%q]');
		const text = row ? row.textContent : '';
		return { ok: !!row && row.dataset.status === 'warm' && text.includes('warm timer') && /healthy|stale|unknown/.test(text),
			state: row ? { status: row.dataset.status, text } : document.querySelector('#nodes-table tbody')?.textContent };
	})()`, task.Task.NodeID))
	b.screenshot(filepath.Join(shots, "nodes.png"))

	// An operator cordons the node from its row (confirming the dialog):
	// it is shown cordoned, and uncordoned again.
	nodeRow := fmt.Sprintf(`#nodes-table tr[data-node-id=%q]`, task.Task.NodeID)
	b.do("cordon the node", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(nodeRow+` button[data-action="cordon"]`)))
	b.wait("the node cordoned", 20*time.Second, fmt.Sprintf(`(() => {
		const row = document.querySelector(%q);
		return { ok: !!row && row.textContent.includes('cordoned') && !!row.querySelector('button[data-action="uncordon"]'), state: row ? row.textContent : null };
	})()`, nodeRow))
	b.do("uncordon the node", chromedp.Click(chromedp.CSS(nodeRow+` button[data-action="uncordon"]`)))
	b.wait("the node uncordoned", 20*time.Second, fmt.Sprintf(`(() => {
		const row = document.querySelector(%q);
		return { ok: !!row && !row.textContent.includes('cordoned') && !!row.querySelector('button[data-action="cordon"]'), state: row ? row.textContent : null };
	})()`, nodeRow))

	// Errors: filtered by kind with the select, then by task with the form.
	b.click("open the errors", `nav a[data-view="errors"]`, "#/errors")
	b.do("filter by kind", chromedp.SetValue(chromedp.CSS("#error-kind"), "task_failed"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#error-kind').dispatchEvent(new Event('change'))`))
	b.wait("the failed task's record under kind task_failed", 30*time.Second, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#errors-table tbody tr')];
		return { ok: rows.length > 0 && rows.every((r) => r.dataset.kind === 'task_failed') && rows.some((r) => r.textContent.includes(%q)),
			state: rows.map((r) => r.dataset.kind + ' ' + r.textContent.slice(0, 120)) };
	})()`, failing))
	b.do("filter by task", chromedp.SendKeys(chromedp.CSS("#error-task"), failing+"\n"))
	b.wait("only the failed task's records", 20*time.Second, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#errors-table tbody tr')];
		return { ok: location.hash.includes(%q) && rows.length > 0 && rows.every((r) => r.textContent.includes(%q)),
			state: { hash: location.hash, rows: rows.map((r) => r.textContent.slice(0, 120)) } };
	})()`, failing, failing))
	b.screenshot(filepath.Join(shots, "errors.png"))

	// The record links to its task, whose diagram marks the failed step.
	b.click("open the failed task", fmt.Sprintf(`#errors-table a[href="#/tasks/%s"]`, failing), "#/tasks/"+failing)
	b.wait("the failed task's diagram", 20*time.Second, `(() => {
		const states = [...document.querySelectorAll('#task-detail .step[data-step]')].map((s) => s.dataset.step + ':' + s.dataset.state);
		const err = document.querySelector('#task-errors')?.textContent || '';
		return { ok: states.length === 8 && states[0] === 'node_selection:done' && states[1] === 'node_provisioning:failed' &&
			states.slice(2).every((s) => s.endsWith(':skipped')) && err.includes('zz9'), state: { states, err } };
	})()`)
	b.screenshot(filepath.Join(shots, "task-failed.png"), chromedp.FullScreenshot(100))

	// Cluster: three members, the leader marked, each healthy in the
	// leader's view (the page was served by a follower, which asks the
	// leader for it).
	b.click("open the cluster", `nav a[data-view="cluster"]`, "#/cluster")
	b.wait("the member table", 20*time.Second, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#members tbody tr')];
		const leaders = rows.filter((r) => r.dataset.state === 'leader').map((r) => r.dataset.member);
		const healthy = rows.filter((r) => r.querySelector('td[data-health="healthy"]'));
		return { ok: rows.length === 3 && leaders.length === 1 && leaders[0] === %q && healthy.length === 3,
			state: rows.map((r) => r.dataset.member + ':' + r.dataset.state + ':' + (r.querySelector('td[data-health]') || {}).textContent) };
	})()`, leader.ID))
	b.screenshot(filepath.Join(shots, "cluster.png"))

	b.check()
	t.Logf("screenshots in %s (list: %s); browser part took %v, whole test %v", shots, listShot, time.Since(b.began).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// startPipelineCluster starts the simulated world and three nodes that run
// the real step handlers against it, wired as `tdf dev` wires them, with
// short timers.
func startPipelineCluster(t *testing.T, apiTweaks ...func(*api.Config)) *server.TestCluster {
	t.Helper()
	co := fakecloud.DefaultOptions()
	co.CreateDuration, co.DeleteDuration, co.RateLimit = 500*time.Millisecond, 200*time.Millisecond, -1
	// A loopback range of our own, so that the agents do not collide with
	// another test's (the default range starts at 127.0.1.1).
	first := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(250)), 1})
	co.Addresses = fakecloud.NewSequentialAllocator(first, netip.MustParsePrefix("127.0.0.0/8"))
	ac := sim.DefaultConfig()
	ac.BootDelay, ac.WorkspaceReadyDelay, ac.AgentWorkDuration, ac.HeartbeatInterval = 300*time.Millisecond, 200*time.Millisecond, 1500*time.Millisecond, time.Second
	agentPort := server.FreePorts(t, 1)[0]
	world := fakeworld.New(fakeworld.Options{Cloud: co, Agent: ac, AgentPort: agentPort, VerifyTokens: true})
	ts := httptest.NewServer(world.Handler())
	provider, err := hetzner.New(hetzner.Options{Endpoint: ts.URL + "/v1", Token: fakecloud.DefaultToken, PollInterval: 100 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeWorld := func() {
		once.Do(func() {
			world.Close()
			ts.Close()
			provider.Close()
		})
	}
	t.Cleanup(closeWorld) // if the cluster does not start

	// Agents call back to any node, and tokens name one issuer: the API
	// addresses must be known before the nodes start.
	ports := server.FreePorts(t, 3)
	var urls []string
	for _, p := range ports {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	c := server.NewTestCluster(t, server.TestOptions{
		API: func(c *api.Config) {
			c.Policy.IdleTimeout = 2 * time.Second
			for _, f := range apiTweaks {
				f(c)
			}
		},
		Runner: func(c *runner.Config) {
			c.RetryBase, c.RetryMax = 200*time.Millisecond, 2*time.Second
		},
		Server: func(c *server.Config) {
			i := slices.Index([]string{"n1", "n2", "n3"}, c.Cluster.NodeID)
			c.HTTPAddr = strings.TrimPrefix(urls[i], "http://")
			pc := handlers.DefaultConfig()
			pc.Cloud, pc.Cluster, pc.AgentPort = provider, "ui-test", agentPort
			pc.ActionPoll, pc.AgentPoll, pc.NodeReadyGrace = 200*time.Millisecond, 200*time.Millisecond, 5*time.Second
			c.Pipeline = &pc
			c.ControlPlaneURL = urls[0]
			c.AgentTimeout = 10 * time.Second
			c.ReconcileInterval, c.ReconcileGrace = time.Hour, time.Hour
			c.Settings = fsm.DefaultSettings()
			c.Settings.NodeWarmTimeout, c.Settings.HeartbeatStale = time.Minute, 5*time.Second
		},
	})
	// The agents stop before the nodes do: a callback that arrives while
	// the cluster shuts down waits for a leader that never comes.
	t.Cleanup(closeWorld)
	return c
}

// browser is one headless Chromium tab with the page's problems recorded:
// uncaught exceptions, console errors and security (CSP) reports.
type browser struct {
	t     *testing.T
	ctx   context.Context
	began time.Time

	mu       sync.Mutex
	problems []string
}

func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	budget, cancelBudget := context.WithTimeout(context.Background(), browserBudget)
	ctx, cancel := chromedp.NewContext(budget, chromedp.WithAllocatorOptions(
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1440, 1000),
		chromedp.Flag("lang", "en-US"),
	))
	// Registered after the cluster: the browser goes first, before the
	// nodes it streams from.
	t.Cleanup(func() {
		cancel()
		cancelBudget()
	})
	b := &browser{t: t, ctx: ctx, began: time.Now()}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			b.problem(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.problem("console.error: " + strings.Join(parts, " "))
			}
		case *log.EventEntryAdded:
			e := ev.Entry
			switch {
			case e.Source == log.EntrySourceSecurity || strings.Contains(e.Text, "Content Security Policy"):
				b.problem("security: " + e.Text)
			case e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork:
				b.problem(fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) problem(p string) {
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// check fails the test for every problem the page had.
func (b *browser) check() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("the page reported: %s", p)
	}
}

// do runs actions, failing the test on an error; each gets at most 20 s.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.check()
		b.failureShot()
		b.t.Fatalf("%s: %v", what, err)
	}
}

// click clicks the element sel selects until the address's fragment
// starts with hash. A click can fail or miss when the page replaces the
// element meanwhile (a live row, say): it is tried again.
func (b *browser) click(what, sel, hash string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	check := fmt.Sprintf(`({ ok: location.hash.startsWith(%q), state: location.hash })`, hash)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err != nil {
			b.t.Logf("%s: click: %v (trying again)", what, err)
		} else if _, ok := b.try(2*time.Second, check); ok {
			return
		}
		if time.Now().After(deadline) {
			b.wait(what, 0, check)
		}
	}
}

// try evaluates js, an expression giving {ok, state}, every 100 ms until
// ok is true or timeout has passed (0: once), and returns the last state.
func (b *browser) try(timeout time.Duration, js string) (json.RawMessage, bool) {
	deadline := time.Now().Add(timeout)
	var last json.RawMessage
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
		cancel()
		var r struct {
			OK    bool            `json:"ok"`
			State json.RawMessage `json:"state"`
		}
		if err != nil {
			last = json.RawMessage(fmt.Sprintf("%q", err.Error()))
		} else if err := json.Unmarshal(raw, &r); err != nil {
			last = raw
		} else if last = r.State; r.OK {
			return last, true
		}
		if !time.Now().Before(deadline) || b.ctx.Err() != nil {
			return last, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wait is try that fails the test, with the last state, on timeout.
func (b *browser) wait(what string, timeout time.Duration, js string) json.RawMessage {
	b.t.Helper()
	state, ok := b.try(timeout, js)
	if !ok {
		b.check()
		b.failureShot()
		b.t.Fatalf("waited %v for %s; the page showed %s", timeout, what, state)
	}
	return state
}

// screenshot saves the viewport (or what shot captures: the whole page with
// chromedp.FullScreenshot(100)) as a PNG.
func (b *browser) screenshot(path string, shot ...chromedp.Action[[]byte]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	capture := chromedp.CaptureScreenshot()
	if len(shot) > 0 {
		capture = shot[0]
	}
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d KiB)", path, len(png)>>10)
}

// failureShot saves what the page looked like when the test failed, to
// $TDF_FAILURE_SCREENSHOT or, by default, the test's temporary directory
// (removed after the test: set the variable to keep it, in CI as an
// artifact).
func (b *browser) failureShot() {
	path := os.Getenv("TDF_FAILURE_SCREENSHOT")
	if path == "" {
		path = filepath.Join(b.t.TempDir(), "failure.png")
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil && os.WriteFile(path, png, 0o644) == nil {
		b.t.Logf("the page at the failure: %s", path)
	}
}
