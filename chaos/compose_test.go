package chaos

// TestComposeChaos runs the docker-compose cluster (docker-compose.cluster.yml,
// the image `make image` builds) through leader kills (docker kill, then
// docker start), pauses (docker pause for longer than an election) and
// network disconnects (docker network disconnect from the cluster network)
// while tasks are submitted and running, then checks from plain API reads
// that nothing was lost or done twice (composecheck_test.go).
//
// By default it is the short run `make test` includes (a few faults of
// each kind). TDF_CHAOS_DOCKER=long (make chaos-docker) is the acceptance
// run: at least 10 of each. It is skipped only when docker is absent.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// composeVariant sizes a run.
type composeVariant struct {
	name string
	// faults of each kind: kill, pause, isolate.
	faults int
	// pace is the time between two submissions while the faults go on.
	pace time.Duration
	// settle bounds the wait for every task to complete after the faults.
	settle time.Duration
}

var (
	composeShort = composeVariant{name: "short", faults: 3, pace: 700 * time.Millisecond, settle: 4 * time.Minute}
	composeLong  = composeVariant{name: "long", faults: 15, pace: 500 * time.Millisecond, settle: 8 * time.Minute}
)

const (
	// composeLeaderWait bounds waiting for a leader every node agrees on (after a
	// fault is repaired: a restarted container replays its log first).
	composeLeaderWait = 2 * time.Minute
	// composeFailoverWait bounds waiting for the other nodes to elect a leader
	// while the old one is down, frozen or cut off.
	composeFailoverWait = time.Minute
	// composeDrainWait bounds waiting, once every task completed, for every node
	// to be destroyed (5 s warm timeout, then the server's deletion).
	composeDrainWait = 2 * time.Minute
	// composeSubmitWait bounds one task's submission, retries included.
	composeSubmitWait = 2 * time.Minute
	composePollEvery  = 500 * time.Millisecond
)

func TestComposeChaos(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("docker is not available (docker info: %v)", err)
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skipf("docker-compose is not installed: %v", err)
	}
	v := composeShort
	if os.Getenv("TDF_CHAOS_DOCKER") == "long" {
		v = composeLong
	}
	began := time.Now()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// An image of this run's own: a tdf:dev built from another checkout
	// must not stand in for this one's.
	image := fmt.Sprintf("tdf:chaostest-%08x", rand.Uint32())
	build := exec.Command("make", "-C", root, "image", "IMAGE="+image)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", image).Run() }) // runs after the project is down
	t.Logf("image %s built in %s", image, time.Since(began).Round(time.Second))

	d, err := StartDocker(context.Background(), DockerOptions{
		ComposeFile: filepath.Join(root, "docker-compose.cluster.yml"), Image: image, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	r := &composeRun{t: t, d: d, http: &http.Client{Timeout: 45 * time.Second},
		probe: &http.Client{Timeout: 3 * time.Second}, acked: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, svc := range []string{"n1", "n2", "n3", dockerFakecloud} {
				t.Logf("--- %s log (last 40 lines)\n%s", svc, d.Logs(svc, 40))
			}
		}
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	r.waitLeader(composeLeaderWait)
	t.Logf("cluster %s up with a leader after %s", d.Project(), time.Since(began).Round(time.Second))

	// Tasks are submitted all through the faults, so that every kind of
	// fault hits tasks at every step.
	stop := make(chan struct{})
	submitted := make(chan error, 1)
	go func() { submitted <- r.submitWhile(stop, v.pace) }()
	faultsBegan := time.Now()
	kinds := []string{"kill", "pause", "isolate"}
	for i := range v.faults * len(kinds) {
		r.fault(kinds[i%len(kinds)], i/len(kinds)+1, v.faults)
		// Let tasks move on between faults.
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
	}
	close(stop)
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
	faultTime := time.Since(faultsBegan)

	r.waitCompleted(v.settle)
	r.waitDrained(composeDrainWait)
	r.check()
	r.waitConverged(composeLeaderWait)
	t.Logf("%s run: %d kills, %d pauses, %d network disconnects of the leader; %d tasks, %d completed by their callback, %d through the run reconcile after a lost status callback; faults took %s, whole run %s",
		v.name, r.done["kill"], r.done["pause"], r.done["isolate"], len(r.ackedTasks()), len(r.ackedTasks())-r.lost, r.lost,
		faultTime.Round(time.Second), time.Since(began).Round(time.Second))
	t.Logf("failover (fault → another node leads): %s", r.failoverSummary())
}

// composeRun is the state of one run.
type composeRun struct {
	t     *testing.T
	d     *Docker
	http  *http.Client // submissions and reads
	probe *http.Client // cluster status (a frozen node must not stall the probes)

	mu        sync.Mutex
	acked     map[string]string // task id → idempotency key
	done      map[string]int    // faults done by kind
	failovers map[string][]time.Duration
	retries   int
	lost      int // tasks whose status callback was lost (check)
}

// ---------------------------------------------------------------------------
// Faults

// fault hurts the current leader: it stays down, frozen or cut off until
// another node has taken over (and at least hold), then is repaired; the
// run goes on once all three nodes agree on a leader again.
func (r *composeRun) fault(kind string, n, of int) {
	r.t.Helper()
	victim := r.waitLeader(composeLeaderWait)
	hold := map[string]time.Duration{
		"kill":    time.Duration(500+rand.IntN(1500)) * time.Millisecond,
		"pause":   time.Duration(1500+rand.IntN(1500)) * time.Millisecond, // > election timeout (300 ms) several times
		"isolate": time.Duration(2000+rand.IntN(2000)) * time.Millisecond,
	}[kind]
	actions := map[string][2]func(string) error{
		"kill":    {r.d.Kill, r.d.Restart},
		"pause":   {r.d.Pause, r.d.Resume},
		"isolate": {r.d.Isolate, r.d.Heal},
	}[kind]
	do, undo := actions[0], actions[1]
	start := time.Now()
	if err := do(victim); err != nil {
		r.t.Fatalf("%s %s: %v", kind, victim, err)
	}
	newLeader, took := r.waitFailover(victim, composeFailoverWait)
	if rest := hold - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	if err := undo(victim); err != nil {
		r.t.Fatalf("undo %s of %s: %v", kind, victim, err)
	}
	r.mu.Lock()
	if r.done == nil {
		r.done, r.failovers = map[string]int{}, map[string][]time.Duration{}
	}
	r.done[kind]++
	r.failovers[kind] = append(r.failovers[kind], took)
	acked := len(r.acked)
	r.mu.Unlock()
	r.t.Logf("%s %d/%d of leader %s: %s leads after %s; repaired after %s (%d tasks acknowledged so far)",
		kind, n, of, victim, newLeader, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), acked)
}

func (r *composeRun) failoverSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for _, kind := range []string{"kill", "pause", "isolate"} {
		ds := slices.Clone(r.failovers[kind])
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		parts = append(parts, fmt.Sprintf("%s: median %s, max %s", kind, ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

// statuses asks every node for its view of the cluster (GET /v1/cluster)
// at once; a node that does not answer is missing from the map.
func (r *composeRun) statuses(nodes []string) map[string]composeClusterView {
	var mu sync.Mutex
	out := map[string]composeClusterView{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v composeClusterView
			if err := r.get(r.probe, r.d.APIURL(n)+"/v1/cluster", &v); err == nil {
				mu.Lock()
				out[n] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

type composeClusterView struct {
	State    string `json:"state"`
	LeaderID string `json:"leader_id"`
	Term     uint64 `json:"term"`
}

// waitLeader waits until all three nodes answer and name the same leader,
// which says it leads, in the same term on two polls in a row (a node
// just healed may still be starting an election).
func (r *composeRun) waitLeader(timeout time.Duration) string {
	r.t.Helper()
	var last map[string]composeClusterView
	var agreed composeClusterView
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(composePollEvery) {
		last = r.statuses(r.d.Nodes())
		if len(last) != 3 {
			agreed = composeClusterView{}
			continue
		}
		leader := last["n1"].LeaderID
		if leader == "" || last["n2"].LeaderID != leader || last["n3"].LeaderID != leader || last[leader].State != "leader" {
			agreed = composeClusterView{}
			continue
		}
		if last[leader] == agreed {
			return leader
		}
		agreed = last[leader]
	}
	r.t.Fatalf("no leader all three nodes agree on within %s: %+v", timeout, last)
	return ""
}

// waitFailover waits until a node other than the victim leads, as a
// majority of the others see it.
func (r *composeRun) waitFailover(victim string, timeout time.Duration) (string, time.Duration) {
	r.t.Helper()
	start := time.Now()
	var others []string
	for _, n := range r.d.Nodes() {
		if n != victim {
			others = append(others, n)
		}
	}
	var last map[string]composeClusterView
	for time.Since(start) < timeout {
		last = r.statuses(others)
		for _, n := range others {
			if v, ok := last[n]; ok && v.State == "leader" && v.LeaderID == n {
				return n, time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("no node but %s leads within %s: %+v", victim, timeout, last)
	return "", 0
}

// ---------------------------------------------------------------------------
// The workload

// submitWhile submits a task every pace until stop is closed, each with its
// own idempotency key, through a random node, and waits for the ones under
// way. It returns the submissions that failed for good.
func (r *composeRun) submitWhile(stop <-chan struct{}, pace time.Duration) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return errors.Join(errs...)
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.submit(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
}

// submit posts task i until a node acknowledges it. A transport error
// (the node is dead, frozen or the answer was lost: unknown outcome) or a
// 5xx is retried with the same Idempotency-Key on another node; any other
// answer is an error.
func (r *composeRun) submit(i int) error {
	key := fmt.Sprintf("compose-%s-%04d", r.d.Project(), i)
	body, _ := json.Marshal(map[string]string{
		"project_id": "p-compose",
		"user_id":    fmt.Sprintf("user%02d", i%5),
		"prompt":     fmt.Sprintf("compose chaos task %d", i),
		"repository": "github.com/acme/app",
	})
	nodes := r.d.Nodes()
	first := rand.IntN(len(nodes))
	var last string
	for attempt, deadline := 0, time.Now().Add(composeSubmitWait); time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			r.mu.Lock()
			r.retries++
			r.mu.Unlock()
			time.Sleep(time.Duration(min(attempt, 10)) * 200 * time.Millisecond)
		}
		n := nodes[(first+attempt)%len(nodes)]
		req, err := http.NewRequest(http.MethodPost, r.d.APIURL(n)+"/v1/tasks", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := r.http.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			last = fmt.Sprintf("%s: %d %s", n, resp.StatusCode, data)
			continue
		case resp.StatusCode != http.StatusAccepted:
			return fmt.Errorf("task %d: POST %s/v1/tasks = %d: %s", i, n, resp.StatusCode, data)
		}
		var got struct {
			Task struct {
				ID string `json:"id"`
			} `json:"task"`
		}
		if err := json.Unmarshal(data, &got); err != nil || got.Task.ID == "" {
			return fmt.Errorf("task %d: 202 answer %q: %v", i, data, err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if prev, ok := r.acked[got.Task.ID]; ok && prev != key {
			return fmt.Errorf("keys %s and %s both answered with task %s", prev, key, got.Task.ID)
		}
		r.acked[got.Task.ID] = key
		return nil
	}
	return fmt.Errorf("task %d (key %s): not acknowledged within %s: %s", i, key, composeSubmitWait, last)
}

func (r *composeRun) ackedTasks() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.acked)
}

// ---------------------------------------------------------------------------
// Reads and the end of the run

func (r *composeRun) get(c *http.Client, u string, out any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s = %d: %s", u, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}

// tasks lists every task (paging GET /v1/tasks) from the first node that
// answers.
func (r *composeRun) tasks() ([]composeTask, error) {
	var errs []error
	for _, n := range r.d.Nodes() {
		var out []composeTask
		cursor := ""
		var err error
		for page := 0; page < 100; page++ {
			var got struct {
				Tasks      []composeTask `json:"tasks"`
				NextCursor string        `json:"next_cursor"`
			}
			u := r.d.APIURL(n) + "/v1/tasks?limit=500"
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			if err = r.get(r.http, u, &got); err != nil {
				break
			}
			out = append(out, got.Tasks...)
			if got.NextCursor == "" || got.NextCursor == cursor {
				return out, nil
			}
			cursor = got.NextCursor
		}
		errs = append(errs, fmt.Errorf("%s: %v", n, err))
	}
	return nil, errors.Join(errs...)
}

func (r *composeRun) nodes() ([]composeNode, error) {
	var got struct {
		Nodes []composeNode `json:"nodes"`
	}
	err := r.get(r.http, r.d.APIURL(r.d.Nodes()[rand.IntN(3)])+"/v1/nodes", &got)
	return got.Nodes, err
}

func (r *composeRun) servers() ([]string, error) {
	var got struct {
		Servers []struct {
			Name string `json:"name"`
		} `json:"servers"`
	}
	if err := r.get(r.http, r.d.LedgerURL()+"/fake/servers", &got); err != nil {
		return nil, err
	}
	var names []string
	for _, s := range got.Servers {
		names = append(names, s.Name)
	}
	return names, nil
}

func (r *composeRun) ledger() ([]composeLedgerEvent, error) {
	var got struct {
		Events []composeLedgerEvent `json:"events"`
	}
	err := r.get(r.http, r.d.LedgerURL()+"/fake/ledger", &got)
	return got.Events, err
}

// waitCompleted waits until every acknowledged task has ended (completed,
// or failed on its running deadline) with nothing left to clean up; any
// other failure or a cancellation ends the test.
func (r *composeRun) waitCompleted(timeout time.Duration) {
	r.t.Helper()
	acked := r.ackedTasks()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		tasks, err := r.tasks()
		if err != nil {
			last = err.Error()
			time.Sleep(composePollEvery)
			continue
		}
		pending, byState := 0, map[string]int{}
		for _, tk := range tasks {
			if _, ok := acked[tk.ID]; !ok {
				continue
			}
			// No task fails: one whose status callback was lost is
			// completed by the run reconcile.
			if tk.Status == "cancelled" || tk.Status == "failed" {
				r.t.Fatalf("task %s is %s: %s (steps %+v)", tk.ID, tk.Status, tk.ErrorMessage, tk.Steps)
			}
			if (tk.Status != "completed" && tk.Status != "failed") || tk.Cleanup == "pending" {
				pending++
				byState[tk.Status+"/"+tk.Step]++
			}
		}
		if pending == 0 && len(tasks) >= len(acked) {
			r.t.Logf("%d tasks ended %s after the faults", len(acked), time.Since(start).Round(time.Second))
			return
		}
		last = fmt.Sprintf("%d of %d not done: %v", pending, len(acked), byState)
		time.Sleep(composePollEvery)
	}
	r.t.Fatalf("tasks not completed within %s: %s", timeout, last)
}

// waitDrained waits until every cluster node is deleted and the fake
// cloud holds no server (idle nodes time out after 5 s).
func (r *composeRun) waitDrained(timeout time.Duration) {
	r.t.Helper()
	var bad []string
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(composePollEvery) {
		nodes, err := r.nodes()
		if err != nil {
			bad = []string{err.Error()}
			continue
		}
		servers, err := r.servers()
		if err != nil {
			bad = []string{err.Error()}
			continue
		}
		if bad = checkComposeNoLeak(nodes, servers); len(bad) == 0 {
			return
		}
	}
	r.t.Fatalf("servers left (leaked) after %s: %q", timeout, bad)
}

// check runs the task and ledger checks on one read of everything.
func (r *composeRun) check() {
	r.t.Helper()
	tasks, err := r.tasks()
	if err != nil {
		r.t.Fatal(err)
	}
	nodes, err := r.nodes()
	if err != nil {
		r.t.Fatal(err)
	}
	events, err := r.ledger()
	if err != nil {
		r.t.Fatal(err)
	}
	lost := lostStatusCallbacks(events)
	r.lost = len(lost)
	bad := append(checkComposeTasks(tasks, r.ackedTasks(), lost), checkComposeLedger(events, tasks, nodes)...)
	for i, b := range bad {
		if i == 20 {
			r.t.Errorf("… and %d more", len(bad)-i)
			break
		}
		r.t.Error(b)
	}
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	r.mu.Lock()
	retries := r.retries
	r.mu.Unlock()
	r.t.Logf("checked %d tasks (%d status callbacks lost to a fault, those tasks completed through the run reconcile), %d cloud nodes, %d ledger events %v; %d submission retries",
		len(tasks), len(lost), len(nodes), len(events), kinds, retries)
}

// waitConverged waits until all nodes report the same applied index and
// state hash.
func (r *composeRun) waitConverged(timeout time.Duration) {
	r.t.Helper()
	var bad []string
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(composePollEvery) {
		var hashes []composeStateHash
		bad = nil
		for _, n := range r.d.Nodes() {
			var h composeStateHash
			if err := r.get(r.probe, r.d.APIURL(n)+"/v1/cluster/state-hash", &h); err != nil {
				bad = append(bad, err.Error())
			}
			hashes = append(hashes, h)
		}
		if bad == nil {
			if bad = checkComposeConverged(hashes); bad == nil {
				r.t.Logf("nodes converged at index %d, hash %.16s", hashes[0].AppliedIndex, hashes[0].Hash)
				return
			}
		}
	}
	r.t.Fatalf("nodes did not converge within %s: %q", timeout, bad)
}
