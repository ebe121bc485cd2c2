package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// TestDashboardTaskActions: from the task view, with the confirmation
// accepted, a follow-up prompt reaches the agent (the follow-up's run
// reports it among the task's messages), the task is cancelled, then
// re-run; each effect is read back through the API. The list shows a
// failed task's error in its row and filters by user and project.
func TestDashboardTaskActions(t *testing.T) {
	chrome := needChromium(t)
	c := startPipelineCluster(t, func(ac *api.Config) { ac.Policy.IdleTimeout = time.Minute })
	leader, followers := c.Followers()
	follower := followers[0]
	b := startBrowser(t, chrome)
	shots := os.Getenv("TDF_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}

	getTask := func() func(id string) *api.Task {
		return func(id string) *api.Task {
			t.Helper()
			var tr api.TaskResponse
			if r := c.Do(leader, http.MethodGet, "/v1/tasks/"+id, nil, nil); r.Status != http.StatusOK || json.Unmarshal(r.Body, &tr) != nil {
				t.Fatalf("GET task %s = %d %s", id, r.Status, r.Body)
			}
			return tr.Task
		}
	}()
	submit := func(user, project, prompt string, extra map[string]string) string {
		t.Helper()
		spec := map[string]string{"project_id": project, "user_id": user, "prompt": prompt, "repository": "github.com/acme/shop", "vm_size": "small"}
		for k, v := range extra {
			spec[k] = v
		}
		body, _ := json.Marshal(spec)
		r := c.Do(follower, http.MethodPost, "/v1/tasks", body, nil)
		if r.Status != http.StatusAccepted {
			t.Fatalf("submit = %d %s", r.Status, r.Body)
		}
		var tr api.TaskResponse
		_ = json.Unmarshal(r.Body, &tr)
		return tr.Task.ID
	}
	id := submit("alice", "shop", "Fix the checkout rounding", nil)
	failing := submit("dave", "infra", "Bump the toolchain", map[string]string{"vm_location": "zz9"})

	b.do("open the dashboard", chromedp.Navigate(follower.URL+"/ui/#/tasks"), chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	b.wait("the failed task's row with its error", 30*time.Second, fmt.Sprintf(`(() => {
		const row = document.querySelector('#task-rows tr[data-task-id=%q]');
		const err = row?.querySelector('.task-error')?.textContent || '';
		return { ok: row?.dataset.status === 'failed' && err.includes('zz9'), state: row ? row.textContent : null };
	})()`, failing))
	b.do("filter by project", chromedp.SetValue(chromedp.CSS("#project-filter"), "shop"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#project-filter').dispatchEvent(new Event('input'))`))
	b.wait("only the shop project's task", 10*time.Second, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#task-rows tr[data-task-id]')].map((r) => r.dataset.taskId);
		return { ok: rows.length === 1 && rows[0] === %q && location.hash.includes('project=shop'), state: { rows, hash: location.hash } };
	})()`, id))

	// The task awaits a follow-up: send one from its page.
	b.click("open the task", fmt.Sprintf(`#task-rows a[href="#/tasks/%s"]`, id), "#/tasks/"+id)
	b.wait("the follow-up form", 60*time.Second, `(() => {
		const box = document.querySelector('#followup-prompt');
		return { ok: !!box && !!document.querySelector('#task-actions button[data-action="prompt"]'),
			state: [...document.querySelectorAll('#task-actions button')].map((b) => b.dataset.action) };
	})()`)
	before := getTask(id).StepDeadline
	const followUp = "Also add a regression test for the rounding"
	b.do("write and send the follow-up", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const box = document.querySelector('#followup-prompt');
		box.value = %q;
		box.dispatchEvent(new Event('input'));
		document.querySelector('#task-actions button[data-action="prompt"]').click();
	})()`, followUp)))
	server.WaitFor(t, 30*time.Second, "the follow-up prompt among the task's messages", func() error {
		r := c.Do(leader, http.MethodGet, "/v1/tasks/"+id+"/messages", nil, nil)
		if !strings.Contains(string(r.Body), followUp) {
			return fmt.Errorf("messages: %d %.300s", r.Status, r.Body)
		}
		return nil
	})
	if now := getTask(id); before == nil || now.StepDeadline == nil || !now.StepDeadline.After(*before) {
		t.Errorf("the follow-up did not restart the idle timer: deadline %v, before %v", now.StepDeadline, before)
	}
	b.screenshot(filepath.Join(shots, "task-actions.png"), chromedp.FullScreenshot(100))

	// Cancel, then re-run, from the same page.
	b.do("cancel the task", chromedp.Click(chromedp.CSS(`#task-actions button[data-action="cancel"]`)))
	server.WaitFor(t, 20*time.Second, "the task cancelled", func() error {
		if st := getTask(id).Status; st != fsm.StatusCancelled {
			return fmt.Errorf("status %s", st)
		}
		return nil
	})
	b.wait("the re-run button", 20*time.Second, `({ ok: !!document.querySelector('#task-actions button[data-action="rerun"]'),
		state: [...document.querySelectorAll('#task-actions button')].map((b) => b.dataset.action) })`)
	b.do("re-run the task", chromedp.Click(chromedp.CSS(`#task-actions button[data-action="rerun"]`)))
	server.WaitFor(t, 20*time.Second, "the task re-run", func() error {
		tk := getTask(id)
		var trail []string
		for _, h := range tk.History {
			trail = append(trail, string(h.To))
		}
		if tk.Status.Terminal() || !strings.Contains(strings.Join(trail, ","), "cancelled,ready,queued") {
			return fmt.Errorf("status %s, history %v", tk.Status, trail)
		}
		return nil
	})
	b.check()
}
