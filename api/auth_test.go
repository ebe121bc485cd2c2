package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

const (
	adminToken = "admin-token-0123456789"
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789ab"
)

func testTokens(t testing.TB) *api.Tokens {
	t.Helper()
	tok, err := api.NewTokens([]api.TokenEntry{
		{Token: adminToken, Scope: api.ScopeAdmin, Subject: "ops"},
		{Token: aliceToken, Scope: api.ScopeUser, Subject: "alice"},
		{Token: bobToken, Scope: api.ScopeUser, Subject: "bob"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func bearerKey(token, key string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Idempotency-Key": key}
}

func listIDs(t *testing.T, r server.TestResponse) []string {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("list = %d %s", r.Status, r.Body)
	}
	var l api.TaskListResponse
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range l.Tasks {
		ids = append(ids, tk.ID)
	}
	return ids
}

func has(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// A user sees, cancels and follows only its own tasks, through any node
// (followers forward writes with the caller's Authorization header and the
// leader authenticates again); an admin sees and cancels everything and
// alone reaches the cluster endpoints.
func TestAuthUserIsolation(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{API: func(ac *api.Config) { ac.Auth = testTokens(t) }})
	leader, followers := c.Followers()
	f := followers[0]

	// Submitted through a follower: forwarded to the leader.
	r := c.Do(f, http.MethodPost, "/v1/tasks", body("alice", "alice's"), bearerKey(aliceToken, "k1"))
	if r.Status != http.StatusAccepted {
		t.Fatalf("alice submit = %d %s", r.Status, r.Body)
	}
	aliceTask := decodeTask(t, r)
	if aliceTask.Owner != "alice" {
		t.Fatalf("owner = %q, want alice", aliceTask.Owner)
	}
	// Bob reuses alice's idempotency key: his own task, not a replay of hers.
	r = c.Do(leader, http.MethodPost, "/v1/tasks", body("bob", "bob's"), bearerKey(bobToken, "k1"))
	if r.Status != http.StatusAccepted || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("bob submit with alice's key = %d %s (replayed %q)", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}
	bobTask := decodeTask(t, r)
	if bobTask.ID == aliceTask.ID || bobTask.Owner != "bob" {
		t.Fatalf("bob's task %s owner %q; alice's %s", bobTask.ID, bobTask.Owner, aliceTask.ID)
	}
	// The owner is replicated: every node answers from its own FSM.
	c.WaitConverged()
	for _, n := range c.Nodes {
		if tk, ok := n.FSM.Task(aliceTask.ID); !ok || tk.Owner != "alice" {
			t.Fatalf("%s: alice's task owner not replicated (%v)", n.ID, tk)
		}
	}

	for _, n := range c.Nodes {
		checkError(t, "bob gets alice's task on "+n.ID, c.Do(n, http.MethodGet, "/v1/tasks/"+aliceTask.ID, nil, bearer(bobToken)), 404, api.CodeNotFound, "not found")
		checkError(t, "bob gets alice's task consistently on "+n.ID, c.Do(n, http.MethodGet, "/v1/tasks/"+aliceTask.ID+"?consistent=true", nil, bearer(bobToken)), 404, api.CodeNotFound, "not found")
		ids := listIDs(t, c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(bobToken)))
		if has(ids, aliceTask.ID) || !has(ids, bobTask.ID) {
			t.Fatalf("bob's list on %s = %v, want only his %s", n.ID, ids, bobTask.ID)
		}
		ids = listIDs(t, c.Do(n, http.MethodGet, "/v1/tasks?user_id=alice", nil, bearer(bobToken)))
		if len(ids) != 0 {
			t.Fatalf("bob filtering by alice's user_id on %s sees %v", n.ID, ids)
		}
		ids = listIDs(t, c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(adminToken)))
		if !has(ids, aliceTask.ID) || !has(ids, bobTask.ID) {
			t.Fatalf("admin's list on %s = %v, want both", n.ID, ids)
		}
	}
	if r := c.Do(f, http.MethodGet, "/v1/tasks/"+aliceTask.ID, nil, bearer(aliceToken)); r.Status != http.StatusOK {
		t.Fatalf("alice gets her task = %d %s", r.Status, r.Body)
	}
	// Bob cannot cancel or idle-reset alice's task, from a follower or the leader.
	checkError(t, "bob cancels alice's task via follower", c.Do(f, http.MethodPost, "/v1/tasks/"+aliceTask.ID+"/cancel", nil, bearer(bobToken)), 404, api.CodeNotFound, "not found")
	checkError(t, "bob cancels alice's task on leader", c.Do(leader, http.MethodPost, "/v1/tasks/"+aliceTask.ID+"/cancel", nil, bearer(bobToken)), 404, api.CodeNotFound, "not found")
	checkError(t, "bob idle-resets alice's task", c.Do(leader, http.MethodPost, "/v1/tasks/"+aliceTask.ID+"/idle-reset", nil, bearer(bobToken)), 404, api.CodeNotFound, "not found")
	if tk, _ := leader.FSM.Task(aliceTask.ID); tk.Status.Terminal() {
		t.Fatalf("alice's task is %s after bob's attempts", tk.Status)
	}
	// Alice cancels her own through a follower; the admin cancels bob's.
	r = c.Do(f, http.MethodPost, "/v1/tasks/"+aliceTask.ID+"/cancel", nil, bearer(aliceToken))
	if r.Status != http.StatusOK || decodeTask(t, r).Status != "cancelled" {
		t.Fatalf("alice cancels her task = %d %s", r.Status, r.Body)
	}
	r = c.Do(f, http.MethodPost, "/v1/tasks/"+bobTask.ID+"/cancel", nil, bearer(adminToken))
	if r.Status != http.StatusOK || decodeTask(t, r).Status != "cancelled" {
		t.Fatalf("admin cancels bob's task = %d %s", r.Status, r.Body)
	}

	// Who may call what.
	for _, n := range []*server.TestNode{leader, f} {
		checkError(t, "no token", c.Do(n, http.MethodGet, "/v1/tasks", nil, nil), 401, api.CodeUnauthorized, "API token")
		checkError(t, "wrong token", c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer("not-a-token-at-all-00")), 401, api.CodeUnauthorized, "API token")
		checkError(t, "not bearer", c.Do(n, http.MethodGet, "/v1/tasks", nil, map[string]string{"Authorization": "Basic " + aliceToken}), 401, api.CodeUnauthorized, "API token")
		for _, path := range []string{"/v1/cluster", "/v1/cluster/state-hash", "/v1/errors", "/metrics"} {
			checkError(t, "user on "+path, c.Do(n, http.MethodGet, path, nil, bearer(aliceToken)), 403, api.CodeForbidden, "admin token")
			if r := c.Do(n, http.MethodGet, path, nil, bearer(adminToken)); r.Status != http.StatusOK {
				t.Errorf("admin on %s = %d %s", path, r.Status, r.Body)
			}
		}
		checkError(t, "user transfers leadership", c.Do(n, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{}`), bearer(aliceToken)), 403, api.CodeForbidden, "admin token")
		checkError(t, "user removes a member", c.Do(n, http.MethodDelete, "/v1/cluster/members/n3", nil, bearer(aliceToken)), 403, api.CodeForbidden, "admin token")
		for _, path := range []string{"/healthz", "/readyz", "/ui/", "/.well-known/jwks.json"} {
			if r := c.Do(n, http.MethodGet, path, nil, nil); r.Status != http.StatusOK {
				t.Errorf("%s without a token = %d, want 200 (open)", path, r.Status)
			}
		}
		// The agents' callbacks keep their own tokens: the callback
		// check answers, not the API token check.
		checkError(t, "callback without token", c.Do(n, http.MethodPost, "/v1/nodes/x1/ready", []byte(`{}`), nil), 401, api.CodeUnauthorized, "callback token")
		checkError(t, "agent callback without token", c.Do(n, http.MethodPost, "/api/nodes/x1/heartbeat", []byte(`{}`), nil), 401, api.CodeUnauthorized, "callback token")
	}
	r = c.Do(f, http.MethodGet, "/v1/whoami", nil, bearer(aliceToken))
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"subject":"alice"`) || !strings.Contains(string(r.Body), `"scope":"user"`) {
		t.Fatalf("whoami = %d %s", r.Status, r.Body)
	}
}

// The event stream shows a user only its own tasks (and no nodes); the
// dashboard's session cookie opens the stream and nothing else.
func TestAuthEventStream(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{API: func(ac *api.Config) { ac.Auth = testTokens(t) }})
	checkError(t, "stream without token", c.Do(n, http.MethodGet, "/v1/events", nil, nil), 401, api.CodeUnauthorized, "API token")

	// POST /v1/session sets the cookie.
	r := c.Do(n, http.MethodPost, "/v1/session", nil, bearer(bobToken))
	if r.Status != http.StatusOK {
		t.Fatalf("session = %d %s", r.Status, r.Body)
	}
	var cookie *http.Cookie
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == "tdf_events" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.Path != "/v1/events" || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie = %+v", cookie)
	}
	cookieHdr := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	// The cookie authorizes nothing but the stream.
	checkError(t, "cookie on task list", c.Do(n, http.MethodGet, "/v1/tasks", nil, cookieHdr), 401, api.CodeUnauthorized, "API token")
	checkError(t, "forged cookie", c.Do(n, http.MethodGet, "/v1/events", nil, map[string]string{"Cookie": "tdf_events=" + cookie.Value + "x"}), 401, api.CodeUnauthorized, "API token")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/events", nil)
	req.Header.Set("Cookie", cookieHdr["Cookie"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream with cookie = %d", resp.StatusCode)
	}
	// Alice's task first, then bob's: the stream is in log order, so by
	// the time bob's arrives alice's would have been sent.
	alice := decodeTask(t, c.Do(n, http.MethodPost, "/v1/tasks", body("alice", "alice's"), bearer(aliceToken)))
	bob := decodeTask(t, c.Do(n, http.MethodPost, "/v1/tasks", body("bob", "bob's"), bearer(bobToken)))
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		close(lines)
	}()
	deadline := time.After(server.TestWait)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended before bob's task arrived")
			}
			if strings.HasPrefix(l, "event: node") {
				t.Fatalf("a user's stream carried a node event: %s", l)
			}
			if strings.Contains(l, alice.ID) {
				t.Fatalf("bob's stream carried alice's task: %s", l)
			}
			if strings.HasPrefix(l, "data:") && strings.Contains(l, bob.ID) {
				return
			}
		case <-deadline:
			t.Fatal("bob's task never arrived on his stream")
		}
	}
}

// Without tokens the API is open, as before, and tasks have no owner.
func TestAuthOffByDefault(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	r := c.Do(n, http.MethodPost, "/v1/tasks", body("u1", "open"), nil)
	if r.Status != http.StatusAccepted || decodeTask(t, r).Owner != "" {
		t.Fatalf("submit without auth = %d %s", r.Status, r.Body)
	}
	if r := c.Do(n, http.MethodGet, "/v1/cluster", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("cluster without auth = %d", r.Status)
	}
	r = c.Do(n, http.MethodGet, "/v1/whoami", nil, nil)
	if !strings.Contains(string(r.Body), `"auth":false`) {
		t.Fatalf("whoami without auth = %s", r.Body)
	}
}
