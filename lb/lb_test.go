package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// fakeNode is a backend that records what reached it.
type fakeNode struct {
	name  string
	srv   *httptest.Server
	mu    sync.Mutex
	got   []string // "METHOD path body"
	ready bool
	// drop hijacks and closes the connection of every request but
	// health checks, after reading it: the request was sent, no answer.
	drop bool
}

func newFakeNode(t *testing.T, name string) *fakeNode {
	n := &fakeNode{name: name, ready: true}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		ready, drop := n.ready, n.drop
		n.mu.Unlock()
		if r.URL.Path == "/readyz" {
			if !ready {
				http.Error(w, `{"error":{"code":"no_leader","message":"no leader known"}}`, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, `{"status":"ready"}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.got = append(n.got, r.Method+" "+r.URL.Path+" "+string(body))
		n.mu.Unlock()
		if drop {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		fmt.Fprintf(w, "%s:%s", n.name, body)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) set(ready, drop bool) {
	n.mu.Lock()
	n.ready, n.drop = ready, drop
	n.mu.Unlock()
}

func (n *fakeNode) requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

// closedURL is the URL of a port nothing listens on: a dead node.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func newLB(t *testing.T, backends ...string) (*Balancer, *httptest.Server) {
	t.Helper()
	b, err := New(Options{Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	b.Check(context.Background())
	front := httptest.NewServer(b)
	t.Cleanup(front.Close)
	return b, front
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDeadBackendIsSkippedForEveryMethod(t *testing.T) {
	a, c := newFakeNode(t, "a"), newFakeNode(t, "c")
	dead := closedURL(t)
	b, front := newLB(t, a.srv.URL, dead, c.srv.URL)
	if st := b.States(); st[1].State != StateDown || st[0].State != StateReady {
		t.Fatalf("states after a check: %+v", st)
	}
	// Even a backend the last check thought ready is skipped once its
	// connection fails: the request was never sent.
	b.backends[1].state.Store(StateReady)
	for i := range 9 {
		code, body := post(t, front.URL+"/v1/tasks", fmt.Sprintf(`{"n":%d}`, i))
		if code != http.StatusOK || !strings.HasSuffix(body, fmt.Sprintf(`{"n":%d}`, i)) {
			t.Fatalf("POST %d = %d %q", i, code, body)
		}
	}
	if b.States()[1].State != StateDown {
		t.Fatalf("dead backend not marked down: %+v", b.States())
	}
	if na, nc := len(a.requests()), len(c.requests()); na+nc != 9 || na == 0 || nc == 0 {
		t.Fatalf("requests spread %d/%d, want 9 over both live backends", na, nc)
	}
}

func TestSentRequestIsRetriedOnlyIfReplayable(t *testing.T) {
	a, c := newFakeNode(t, "a"), newFakeNode(t, "c")
	_, front := newLB(t, a.srv.URL, c.srv.URL)
	a.set(true, true)
	c.set(true, true)
	// A task submission that reached a node which then vanished may
	// have been done: 502, and sent once only.
	code, body := post(t, front.URL+"/v1/tasks", `{"prompt":"x"}`)
	if code != http.StatusBadGateway || !strings.Contains(body, `"code":"bad_gateway"`) {
		t.Fatalf("POST /v1/tasks = %d %q, want 502 in tdf's error format", code, body)
	}
	if n := len(a.requests()) + len(c.requests()); n != 1 {
		t.Fatalf("task submission sent %d times, want once", n)
	}
	// A callback is a no-op when repeated: sent on to the other node.
	a.set(true, false)
	c.set(true, false)
	for range 4 { // whichever node comes first, one of them drops
		a.set(true, true)
		c.set(true, false)
		code, body = post(t, front.URL+"/api/projects/p1/tasks/t1/status/callback", `{"toStatus":"completed"}`)
		if code != http.StatusOK || body != `c:{"toStatus":"completed"}` {
			t.Fatalf("callback = %d %q, want c's answer", code, body)
		}
	}
}

func TestReadyBackendsFirstThenLiveOnes(t *testing.T) {
	a, c := newFakeNode(t, "a"), newFakeNode(t, "c")
	a.set(false, false)
	b, front := newLB(t, a.srv.URL, c.srv.URL)
	for range 4 {
		if code, body := post(t, front.URL+"/v1/nodes/n1/heartbeat", "{}"); code != 200 || !strings.HasPrefix(body, "c:") {
			t.Fatalf("with c alone ready: %d %q", code, body)
		}
	}
	// An election: nobody knows a leader. The nodes still answer (and
	// hold callbacks until there is one): send to them.
	c.set(false, false)
	b.Check(context.Background())
	if st := b.States(); st[0].State != StateLive || st[1].State != StateLive {
		t.Fatalf("states during an election: %+v", st)
	}
	if code, _ := post(t, front.URL+"/v1/nodes/n1/heartbeat", "{}"); code != 200 {
		t.Fatalf("during an election: %d", code)
	}
}

func TestReplayable(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/v1/tasks", true},
		{"POST", "/v1/tasks", false},
		{"POST", "/v1/tasks/t1/cancel", false},
		{"POST", "/v1/cluster/transfer-leadership", false},
		{"POST", "/api/nodes/n1/ready", true},
		{"POST", "/api/nodes/n1/heartbeat", true},
		{"POST", "/v1/nodes/n1/errors", true},
		{"POST", "/api/workspaces/w1/ready", true},
		{"POST", "/api/workspaces/w1/provisioning-failed", true},
		{"POST", "/v1/tasks/t1/status", true},
		{"POST", "/api/projects/p/tasks/t/status/callback", true},
		{"POST", "/api/workspaces/w1/messages", true},
		{"POST", "/api/workspaces/w1/agent-key", true},
		{"POST", "/api/workspaces/w1/git-token", true},
		{"POST", "/api/projects/p/acp-sessions/s/activity", true},
		{"POST", "/api/workspaces/w1/boot-log", false},
		{"POST", "/api/workspaces/w1/agent-key/extra", false},
		{"DELETE", "/v1/cluster/members/n3", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if got := Replayable(r); got != c.want {
			t.Errorf("Replayable(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestNewRejectsBadBackends(t *testing.T) {
	for _, bs := range [][]string{nil, {"127.0.0.1:8001"}, {"http://a:1/x"}, {"ftp://a:1"}} {
		if _, err := New(Options{Backends: bs}); err == nil {
			t.Errorf("New(%q) succeeded", bs)
		}
	}
}

// docs/haproxy.cfg, the production load balancer, re-sends the same
// requests after a node died mid-request as this one does.
func TestHAProxyConfigReplaysTheSameRoutes(t *testing.T) {
	cfg, err := os.ReadFile("../docs/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, line := range strings.Split(string(cfg), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "acl" && f[1] == "replayable" && f[2] == "path_reg" {
			got = f[3]
		}
	}
	if got != replayPaths.String() {
		t.Fatalf("haproxy.cfg replays %q,\nlb replays %q", got, replayPaths.String())
	}
}
