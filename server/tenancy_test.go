package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

// newToken has the admin create a token and returns it.
func newToken(t *testing.T, c *server.TestCluster, admin string, req api.TokenRequest) string {
	t.Helper()
	b, _ := json.Marshal(req)
	r := c.Do(c.Nodes[0], http.MethodPost, "/v1/tokens", b, bearer(admin))
	var out api.TokenCreated
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &out) != nil {
		t.Fatalf("create %+v = %d %s", req, r.Status, r.Body)
	}
	return out.Token
}

func projectBody(user, project, prompt string) []byte {
	b, _ := json.Marshal(api.SubmitRequest{ProjectID: project, UserID: user, Prompt: prompt, Repository: "github.com/acme/app"})
	return b
}

// A user token acts only as its own user and sees, cancels and follows
// only its own tasks; a token restricted to projects uses only those.
func TestTenantsKeptApart(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Secure: true})
	admin := c.AdminToken()
	alice := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "alice"})
	bob := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "bob"})
	carol := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "carol", Projects: []string{"p1"}})
	n := c.Nodes[1]

	r := c.Do(n, http.MethodPost, "/v1/tasks", submitBody("bob", "as bob"), bearer(alice))
	if r.Status != http.StatusForbidden || decodeError(t, r).Code != api.CodeForbidden || !strings.Contains(string(r.Body), "user_id") {
		t.Fatalf("alice submitting as bob = %d %s, want 403 naming user_id", r.Status, r.Body)
	}
	// Bob's stream is open before alice submits: it must never show her task.
	events := openStream(t, n.URL, bob)
	r = c.Do(n, http.MethodPost, "/v1/tasks", submitBody("alice", "mine"), bearer(alice))
	if r.Status != http.StatusAccepted {
		t.Fatalf("alice submitting = %d %s", r.Status, r.Body)
	}
	aliceTask := decodeTask(t, r).ID
	r = c.Do(n, http.MethodPost, "/v1/tasks", submitBody("bob", "his"), bearer(bob))
	if r.Status != http.StatusAccepted {
		t.Fatalf("bob submitting = %d %s", r.Status, r.Body)
	}
	bobTask := decodeTask(t, r).ID
	for ev := range events {
		if strings.Contains(ev, aliceTask) {
			t.Fatalf("bob's event stream shows alice's task: %s", ev)
		}
		if strings.Contains(ev, bobTask) {
			break
		}
	}
	for _, probe := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/tasks/" + aliceTask, ""},
		{http.MethodGet, "/v1/tasks/" + aliceTask + "/messages", ""},
		{http.MethodPost, "/v1/tasks/" + aliceTask + "/cancel", ""},
		{http.MethodPost, "/v1/tasks/" + aliceTask + "/idle-reset", ""},
	} {
		var b []byte
		if probe.body != "" {
			b = []byte(probe.body)
		}
		if r := c.Do(n, probe.method, probe.path, b, bearer(bob)); r.Status != http.StatusNotFound {
			t.Fatalf("bob: %s %s = %d %s, want 404", probe.method, probe.path, r.Status, r.Body)
		}
	}
	if r := c.Do(n, http.MethodPost, "/v1/tasks/"+bobTask+"/cancel", []byte(`{"user_id":"alice"}`), bearer(bob)); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "user_id") {
		t.Fatalf("bob cancelling as alice = %d %s, want 403 naming user_id", r.Status, r.Body)
	}
	r = c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(bob))
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), aliceTask) || !strings.Contains(string(r.Body), bobTask) {
		t.Fatalf("bob's list = %d %s", r.Status, r.Body)
	}
	if r := c.Do(n, http.MethodGet, "/v1/nodes?user_id=alice", nil, bearer(bob)); r.Status != http.StatusForbidden {
		t.Fatalf("bob listing alice's nodes = %d %s, want 403", r.Status, r.Body)
	}
	if r := c.Do(n, http.MethodGet, "/v1/nodes", nil, bearer(bob)); r.Status != http.StatusOK {
		t.Fatalf("bob listing his nodes = %d %s", r.Status, r.Body)
	}

	r = c.Do(n, http.MethodPost, "/v1/tasks", projectBody("carol", "p2", "elsewhere"), bearer(carol))
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "project_id") {
		t.Fatalf("carol submitting to p2 = %d %s, want 403 naming project_id", r.Status, r.Body)
	}
	if r := c.Do(n, http.MethodPost, "/v1/tasks", projectBody("carol", "p1", "here"), bearer(carol)); r.Status != http.StatusAccepted {
		t.Fatalf("carol submitting to p1 = %d %s", r.Status, r.Body)
	}
	// An admin acts for anyone: a task of carol's in p2 stays out of her
	// p1-only token's reads.
	r = c.Do(n, http.MethodPost, "/v1/tasks", projectBody("carol", "p2", "by admin"), bearer(admin))
	if r.Status != http.StatusAccepted {
		t.Fatalf("admin submitting for carol = %d %s", r.Status, r.Body)
	}
	p2 := decodeTask(t, r).ID
	if r := c.Do(n, http.MethodGet, "/v1/tasks/"+p2, nil, bearer(carol)); r.Status != http.StatusNotFound {
		t.Fatalf("carol reading a p2 task = %d, want 404", r.Status)
	}
}

// openStream follows GET /v1/events with a token; each event's data line
// arrives on the channel until the test ends.
func openStream(t *testing.T, base, tok string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	out := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data:") {
				select {
				case out <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Concurrent-task quotas per user and per project answer 429
// quota_exceeded naming the bound.
func TestTaskQuotas(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true, API: func(ac *api.Config) {
		ac.MaxActiveTasksPerUser, ac.MaxActiveTasksPerProject = 2, 3
	}})
	admin := c.AdminToken()
	n := c.Nodes[0]
	submit := func(user, project string) server.TestResponse {
		return c.Do(n, http.MethodPost, "/v1/tasks", projectBody(user, project, "q"), bearer(admin))
	}
	keyed := func(key string) server.TestResponse {
		hdr := bearer(admin)
		hdr["Idempotency-Key"] = key
		return c.Do(n, http.MethodPost, "/v1/tasks", projectBody("u1", "p1", "q"), hdr)
	}
	if r := keyed("first"); r.Status != http.StatusAccepted {
		t.Fatalf("u1's first task = %d %s", r.Status, r.Body)
	}
	if r := submit("u1", "p1"); r.Status != http.StatusAccepted {
		t.Fatalf("u1's second task = %d %s", r.Status, r.Body)
	}
	r := submit("u1", "p2")
	if e := decodeError(t, r); r.Status != http.StatusTooManyRequests || e.Code != api.CodeQuotaExceeded || !strings.Contains(e.Message, "user u1") {
		t.Fatalf("u1's third task = %d %s, want 429 quota_exceeded for the user", r.Status, r.Body)
	}
	// A retry of a submission already in is its first answer, not a 429.
	if r := keyed("first"); r.Status != http.StatusAccepted || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a retried submission at the bound = %d %s (replayed %q), want its first answer", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}
	if r := submit("u2", "p1"); r.Status != http.StatusAccepted {
		t.Fatalf("u2's task = %d %s", r.Status, r.Body)
	}
	r = submit("u3", "p1")
	if e := decodeError(t, r); r.Status != http.StatusTooManyRequests || !strings.Contains(e.Message, "project p1") {
		t.Fatalf("p1's fourth task = %d %s, want 429 quota_exceeded for the project", r.Status, r.Body)
	}
	// A cancelled task frees its slot once it is finished.
	var list api.TaskListResponse
	_ = json.Unmarshal(c.Do(n, http.MethodGet, "/v1/tasks?user_id=u1", nil, bearer(admin)).Body, &list)
	if r := c.Do(n, http.MethodPost, "/v1/tasks/"+list.Tasks[0].ID+"/cancel", nil, bearer(admin)); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	server.WaitFor(t, 10*time.Second, "u1 may submit again", func() error {
		if r := submit("u1", "p2"); r.Status != http.StatusAccepted {
			return errStatus(n.ID, r)
		}
		return nil
	})
}

// TestNewTokenWorksAtOnceOnEveryNode: a token created through the leader
// and presented at once to a follower, which may not have applied its
// creation yet, is accepted (the follower catches up before it refuses).
func TestNewTokenWorksAtOnceOnEveryNode(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Secure: true})
	admin := c.AdminToken()
	leader, followers := c.Followers()
	for i := range 20 {
		b, _ := json.Marshal(api.TokenRequest{Scope: api.ScopeUser, Subject: fmt.Sprintf("u%d", i)})
		r := c.Do(leader, http.MethodPost, "/v1/tokens", b, bearer(admin))
		var out api.TokenCreated
		if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &out) != nil {
			t.Fatalf("create = %d %s", r.Status, r.Body)
		}
		f := followers[i%len(followers)]
		if r := c.Do(f, http.MethodGet, "/v1/tasks", nil, bearer(out.Token)); r.Status != http.StatusOK {
			t.Fatalf("token %d presented at once to %s = %d %s, want 200", i, f.ID, r.Status, r.Body)
		}
	}
}
