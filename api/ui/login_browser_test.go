package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

const (
	loginAdminToken = "admin-ui-token-0123456789"
	loginAliceToken = "alice-ui-token-0123456789"
	loginBobToken   = "bob-ui-token-0123456789ab"
)

// The dashboard behind API tokens, in a real browser: it shows only a
// sign-in form until it has a valid token; a user token shows that user's
// tasks (live, over the event stream's session cookie) and not another
// user's, and no cluster data; signing out returns to the form.
func TestDashboardLogin(t *testing.T) {
	chrome := chromium()
	if chrome == "" {
		t.Skip("no Chromium found; install one (apt-get install chromium) to run the dashboard's browser test")
	}
	tokens, err := api.NewTokens([]api.TokenEntry{
		{Token: loginAdminToken, Scope: api.ScopeAdmin, Subject: "ops"},
		{Token: loginAliceToken, Scope: api.ScopeUser, Subject: "alice"},
		{Token: loginBobToken, Scope: api.ScopeUser, Subject: "bob"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := server.NewTestCluster(t, server.TestOptions{API: func(ac *api.Config) { ac.Auth = tokens }})
	_, followers := c.Followers()
	n := followers[0]
	submit := func(token, user, prompt string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"project_id": "acme", "user_id": user, "prompt": prompt, "repository": "github.com/acme/app"})
		r := c.Do(n, http.MethodPost, "/v1/tasks", body, map[string]string{"Authorization": "Bearer " + token})
		if r.Status != http.StatusAccepted {
			t.Fatalf("submit = %d %s", r.Status, r.Body)
		}
		var tr api.TaskResponse
		if err := json.Unmarshal(r.Body, &tr); err != nil {
			t.Fatal(err)
		}
		return tr.Task.ID
	}
	bobTask := submit(loginBobToken, "bob", "bob's task")
	aliceTask := submit(loginAliceToken, "alice", "alice's first task")

	b := startBrowser(t, chrome)
	b.do("open the dashboard", chromedp.Navigate(n.URL+"/ui/"))
	b.wait("the sign-in form, and no data", 20*time.Second, `(() => {
		const form = !!document.querySelector('#login #login-token');
		return { ok: form && !document.querySelector('#tasks-table') && document.querySelector('#conn').dataset.state === 'down',
			state: { form, tasks: !!document.querySelector('#tasks-table'), view: document.querySelector('#view').textContent.slice(0, 200) } };
	})()`)

	// A wrong token: the form again, saying so.
	b.do("sign in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#login-token"), "not-a-valid-token-000"+"\n"))
	b.wait("the refusal", 20*time.Second, `(() => {
		const err = document.querySelector('#login-error')?.textContent || '';
		return { ok: !!document.querySelector('#login-token') && err.includes('refused'), state: err };
	})()`)

	// Alice: her task, live; not bob's.
	b.do("sign in as alice",
		chromedp.SendKeys(chromedp.CSS("#login-token"), loginAliceToken+"\n"))
	b.wait("alice's task list over a live stream", 20*time.Second, fmt.Sprintf(`(() => {
		const ids = [...document.querySelectorAll('#tasks-table tbody tr a.mono')].map((a) => a.textContent);
		const who = document.querySelector('#who-subject')?.textContent;
		const conn = document.querySelector('#conn')?.dataset.state;
		return { ok: conn === 'live' && who === 'alice' && ids.includes(%[1]q), state: { conn, who, ids } };
	})()`, aliceTask))
	live := submit(loginAliceToken, "alice", "alice's second task")
	submit(loginBobToken, "bob", "bob's second task")
	// Its trail is recorded only from stream events.
	b.wait("alice's new task to arrive over the event stream", 20*time.Second, fmt.Sprintf(`(() => {
		const ids = [...document.querySelectorAll('#tasks-table tbody tr a.mono')].map((a) => a.textContent);
		return { ok: ids.includes(%[1]q) && window.tdf.trail(%[1]q).length > 0, state: { ids, stats: window.tdf.stats } };
	})()`, live))
	b.wait("no task of bob's", 0, fmt.Sprintf(`(() => {
		const ids = [...document.querySelectorAll('#tasks-table tbody tr a.mono')].map((a) => a.textContent);
		return { ok: ids.length === 2 && !ids.includes(%[1]q), state: ids };
	})()`, bobTask))
	// Cluster data is for admins.
	b.click("open the cluster", `nav a[data-view="cluster"]`, "#/cluster")
	b.wait("the cluster view to refuse a user token", 20*time.Second, `(() => {
		const text = document.querySelector('#view').textContent;
		return { ok: text.includes('admin token'), state: text.slice(0, 300) };
	})()`)

	// Sign out: the form again, and the token is gone from the tab.
	b.do("sign out", chromedp.Click(chromedp.CSS("#sign-out")))
	b.wait("the sign-in form after signing out", 20*time.Second, `(() => ({
		ok: !!document.querySelector('#login-token') && !sessionStorage.getItem('tdf.token') && !document.querySelector('#tasks-table'),
		state: { form: !!document.querySelector('#login-token'), stored: sessionStorage.getItem('tdf.token') } }))()`)

	// The admin sees everyone's tasks.
	b.do("sign in as admin",
		chromedp.SendKeys(chromedp.CSS("#login-token"), loginAdminToken+"\n"))
	b.click("open the tasks", `nav a[data-view="tasks"]`, "#/tasks")
	b.wait("every task for the admin", 20*time.Second, fmt.Sprintf(`(() => {
		const ids = [...document.querySelectorAll('#tasks-table tbody tr a.mono')].map((a) => a.textContent);
		return { ok: ids.length === 4 && ids.includes(%[1]q) && document.querySelector('#conn')?.dataset.state === 'live', state: ids };
	})()`, bobTask))
	b.check()
}
