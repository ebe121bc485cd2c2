package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// The world of a handler test: a fake Hetzner API behind hcloud-go, a
// simulated VM agent, a token issuer and an FSM driven with commands, as
// the runner would drive it.

const (
	testCluster = "test"
	testCPURL   = "http://cp.test:7000"
	// waitFor bounds every poll of a test: generous, for -race on a
	// loaded two-core machine.
	waitFor = 30 * time.Second
)

var (
	keyOnce sync.Once
	testKey tokens.Key
	keyErr  error
)

func signingKey(t *testing.T) tokens.Key {
	t.Helper()
	keyOnce.Do(func() { testKey, keyErr = tokens.GenerateKey() })
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return testKey
}

// loopback hands every server 127.0.0.1, where the test's agent listens.
type loopback struct{}

func (loopback) Allocate() (netip.Addr, error) { return netip.MustParseAddr("127.0.0.1"), nil }
func (loopback) Release(netip.Addr)            {}

type world struct {
	t      *testing.T
	f      *fsm.FSM
	index  uint64
	fake   *fakecloud.Server
	cloud  *hetzner.Provider
	issuer *tokens.Issuer
	cfg    handlers.Config

	agent   *sim.Agent
	agentTS *httptest.Server
	// agentDown makes the agent answer 503 to everything (a VM whose
	// agent is not up yet, or is restarting).
	agentDown atomic.Bool
	rec       recorder
}

type worldOpts struct {
	fake fakecloud.Options
	// token is the API token the provider sends (default: the fake's).
	token string
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, f: fsm.New()}
	if o.fake.RateLimit == 0 {
		o.fake.RateLimit = -1
	}
	if o.fake.CreateDuration == 0 {
		o.fake.CreateDuration = 200 * time.Millisecond
	}
	if o.fake.DeleteDuration == 0 {
		o.fake.DeleteDuration = 100 * time.Millisecond
	}
	w.fake = fakecloud.New(o.fake)
	ts := httptest.NewServer(w.fake.Handler())
	token := o.token
	if token == "" {
		token = fakecloud.DefaultToken
	}
	prov, err := hetzner.New(hetzner.Options{
		Endpoint: ts.URL + "/v1", Token: token, PollInterval: 20 * time.Millisecond,
		MaxRetries: -1, // every answer reaches the handler as it is
		Timeout:    10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.cloud = prov
	key := signingKey(t)
	w.issuer = &tokens.Issuer{URL: testCPURL, Keys: func() []tokens.Key { return []tokens.Key{key} }, Now: time.Now}
	w.cfg = handlers.DefaultConfig()
	w.cfg.FSM, w.cfg.Cloud, w.cfg.Tokens, w.cfg.Cluster = w.f, prov, w.issuer, testCluster
	w.cfg.Agents = vmagent.NewClient(vmagent.Options{Timeout: 10 * time.Second, Tokens: w.issuer})
	w.cfg.ActionPoll, w.cfg.AgentPoll = 25*time.Millisecond, 25*time.Millisecond
	t.Cleanup(func() {
		if w.agent != nil {
			w.agent.Close()
			w.agentTS.Close()
		}
		prov.Close()
		w.fake.Close()
		ts.Close()
	})
	return w
}

// managementVerifier checks management tokens as the real agent does,
// against the issuer's keys.
func (w *world) managementVerifier() sim.Verifier {
	return sim.VerifierFunc(func(tok, nodeID, workspaceID string) error {
		err := w.issuer.VerifyManagement(tok, nodeID, workspaceID)
		switch {
		case errors.Is(err, tokens.ErrWrongAuth):
			return fmt.Errorf("%w: %v", sim.ErrForbidden, err)
		case err != nil:
			return fmt.Errorf("%w: %v", sim.ErrUnauthorized, err)
		}
		return nil
	})
}

// startAgent starts the simulated agent of a node on 127.0.0.1 and points
// the handlers' AgentPort at it.
func (w *world) startAgent(nodeID string, mod func(*sim.Config)) *sim.Agent {
	w.t.Helper()
	cfg := sim.DefaultConfig()
	cfg.NodeID = nodeID
	cfg.Verifier = w.managementVerifier()
	cfg.HeartbeatInterval = -1
	cfg.WorkspaceReadyDelay = 50 * time.Millisecond
	cfg.AgentWorkDuration = time.Hour // no status callback during a test
	if mod != nil {
		mod(&cfg)
	}
	w.agent = sim.New(cfg)
	h := w.agent.Handler()
	w.agentTS = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.agentDown.Load() {
			http.Error(rw, `{"error":"agent not up"}`, http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		// The answer is recorded before the client can see it.
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, r)
		w.rec.add(call{Method: r.Method, Path: r.URL.Path, Status: rr.Code, Body: body})
		maps.Copy(rw.Header(), rr.Header())
		rw.WriteHeader(rr.Code)
		_, _ = rw.Write(rr.Body.Bytes())
	}))
	_, port, err := net.SplitHostPort(w.agentTS.Listener.Addr().String())
	if err != nil {
		w.t.Fatal(err)
	}
	w.cfg.AgentPort, _ = strconv.Atoi(port)
	return w.agent
}

// call is one request the agent answered.
type call struct {
	Method, Path string
	Status       int
	Body         []byte
}

type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// find returns the calls to method and path, in order.
func (r *recorder) find(method, path string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

func (w *world) handler(step fsm.Step) runner.Handler {
	w.t.Helper()
	h := handlers.New(w.cfg)[step]
	if h == nil {
		w.t.Fatalf("no handler for %s", step)
	}
	return h
}

// apply commits a command and fails the test on a domain error.
func (w *world) apply(c fsm.Command) *fsm.Result {
	w.t.Helper()
	r := w.tryApply(c)
	if r.Err != nil {
		w.t.Fatalf("apply %T: %v", c, r.Err)
	}
	return r
}

func (w *world) tryApply(c fsm.Command) *fsm.Result {
	w.t.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		w.t.Fatalf("encode %T: %v", c, err)
	}
	w.index++
	return w.f.ApplyCommand(w.index, b)
}

func taskSpec() fsm.TaskSpec {
	return fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: "fix the flaky test", Repository: "github.com/acme/app"}
}

// submit creates a task and runs its node selection (a new node: the
// world has none yet, or none ready).
func (w *world) submit(id string, spec fsm.TaskSpec) *fsm.Task {
	w.t.Helper()
	w.apply(fsm.SubmitTask{TaskID: id, Spec: spec, At: time.Now()})
	r := w.apply(fsm.DecideStep{TaskID: id, Step: fsm.StepNodeSelection, Leader: "n1", At: time.Now()})
	return r.Task
}

// claim commits the next attempt of the task's runnable step and returns
// the claimed task, as the runner hands it to a handler.
func (w *world) claim(id string) *fsm.Task {
	w.t.Helper()
	cur, ok := w.f.Task(id)
	if !ok {
		w.t.Fatalf("task %s missing", id)
	}
	return w.apply(fsm.StepStarted{TaskID: id, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: 1, Leader: "n1", At: time.Now()}).Task
}

// run runs the handler of a claimed task's step once.
func (w *world) run(claimed *fsm.Task) runner.Result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	step := claimed.RunnableStep()
	return w.handler(step).Run(ctx, claimed, runner.IdempotencyKey(claimed.ID, step))
}

// commit turns a handler's result into the fenced StepResult as the
// runner does (retries are not counted against a limit here).
func (w *world) commit(claimed *fsm.Task, out runner.Result) *fsm.Task {
	w.t.Helper()
	now := time.Now()
	c := fsm.StepResult{TaskID: claimed.ID, Step: claimed.RunnableStep(), Attempt: claimed.Attempt, Term: claimed.ClaimTerm,
		Data: out.Data, Leader: "n1", At: now}
	switch {
	case out.Err == nil && out.PollAfter > 0:
		c.Outcome, c.RetryAt = fsm.OutcomePoll, now.Add(out.PollAfter)
	case out.Err == nil:
		c.Outcome = fsm.OutcomeSuccess
	default:
		c.Class, c.Error = runner.Classify(out.Err), out.Err.Error()
		c.Outcome = fsm.OutcomeFail
		if c.Class == fsm.ClassTransient {
			c.Outcome, c.RetryAt = fsm.OutcomeRetry, now.Add(10*time.Millisecond)
		}
	}
	return w.apply(c).Task
}

// succeedStep claims the task's step and commits a success with data,
// without running a handler: for steps a test is not about.
func (w *world) succeedStep(id string, data fsm.StepData) *fsm.Task {
	w.t.Helper()
	return w.commit(w.claim(id), runner.Done(data))
}

// until polls cond every few milliseconds until it holds, failing the test
// after waitFor.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countEvents(events []fakecloud.Event, kind string) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func countAgentEvents(events []sim.Event, kind sim.EventKind) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func wantClass(t *testing.T, what string, err error, want fsm.ErrorClass) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want a %s one", what, want)
	}
	if got := runner.Classify(err); got != want {
		t.Fatalf("%s: %v classified %s, want %s", what, err, got, want)
	}
}
