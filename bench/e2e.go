package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/runner"
)

// E2EOptions sizes the end-to-end benchmark.
type E2EOptions struct {
	Dir string
	// Tasks are submitted over HTTP to the leader by Clients goroutines,
	// each one request at a time.
	Tasks   int
	Clients int
	// Rate > 0 sends the tasks open loop at Rate a second instead (for
	// latency at a load the cluster keeps up with).
	Rate int
	// Workers is the runner's worker count and Calls its concurrent
	// handler calls (0: the defaults).
	Workers, Calls int
	// Timeout bounds the wait for the last task to complete.
	Timeout time.Duration
}

// E2EResult is the end-to-end figure.
type E2EResult struct {
	Tasks, Workers, Calls, Rate int
	// Elapsed runs from the first submission to the last completion.
	Elapsed time.Duration
	// SubmitPerSec is how fast the API accepted the tasks.
	SubmitPerSec float64
	// ToRunning is submit (request sent) → in_progress (the agent session
	// started, the task enters the running step).
	ToRunningP50, ToRunningP99 time.Duration
	// ToCompleted is submit → completed with cleanup done.
	ToCompletedP50, ToCompletedP99 time.Duration
	// Commits is the raft entries applied during the run.
	Commits uint64
}

// PerSec is tasks completed per second.
func (r E2EResult) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Tasks) / r.Elapsed.Seconds()
}

// EndToEnd runs tasks through all eight steps and cleanup on three nodes
// with the zero-delay fakes and the default runner.
func EndToEnd(ctx context.Context, opts E2EOptions) (E2EResult, error) {
	c, err := startCluster(ctx, clusterOptions{Dir: filepath.Join(opts.Dir, fmt.Sprintf("e2e-%d-%d", opts.Workers, opts.Rate)),
		Workers: opts.Workers, Calls: opts.Calls, Handlers: zeroDelayHandlers,
		Policy: benchPolicy(), Settings: benchSettings()})
	if err != nil {
		return E2EResult{}, err
	}
	defer c.close()
	def := runner.DefaultConfig()
	workers, calls := cmp.Or(opts.Workers, def.Workers), cmp.Or(opts.Calls, def.Calls)
	leader := c.leader()
	tr := newTracker(leader.FSM)
	defer tr.stop()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: opts.Clients}}
	var mu sync.Mutex
	submitted := map[string]time.Time{}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	i0 := leader.FSM.AppliedIndex()
	start := time.Now()
	submitOne := func(i int) error {
		t0 := time.Now()
		id, err := submitHTTP(ctx, client, leader.URL, i)
		if err != nil {
			return err
		}
		mu.Lock()
		submitted[id] = t0
		mu.Unlock()
		return nil
	}
	if opts.Rate > 0 {
		_, _, firstErr = openLoop(ctx, opts.Rate, time.Duration(opts.Tasks)*time.Second/time.Duration(opts.Rate), submitOne)
	}
	for w := 0; w < opts.Clients && opts.Rate <= 0; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= opts.Tasks {
					return
				}
				if err := submitOne(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	submitDone := time.Since(start)
	if firstErr != nil {
		return E2EResult{}, firstErr
	}
	if err := waitUntil(ctx, opts.Timeout, func() bool { d, f := tr.counts(); return d+f >= opts.Tasks }); err != nil {
		d, f := tr.counts()
		return E2EResult{}, fmt.Errorf("%d of %d tasks completed (%d failed) within %s", d, opts.Tasks, f, opts.Timeout)
	}
	if _, f := tr.counts(); f > 0 {
		return E2EResult{}, fmt.Errorf("%d tasks failed, e.g. %s", f, tr.firstFailure())
	}
	var toRun, toDone []time.Duration
	var last time.Time
	for id, t0 := range submitted {
		r, d := tr.times(id)
		toRun = append(toRun, r.Sub(t0))
		toDone = append(toDone, d.Sub(t0))
		if d.After(last) {
			last = d
		}
	}
	return E2EResult{
		Tasks: opts.Tasks, Workers: workers, Calls: calls, Rate: opts.Rate, Elapsed: last.Sub(start), SubmitPerSec: float64(opts.Tasks) / submitDone.Seconds(),
		ToRunningP50: percentile(toRun, 50), ToRunningP99: percentile(toRun, 99),
		ToCompletedP50: percentile(toDone, 50), ToCompletedP99: percentile(toDone, 99),
		Commits: leader.FSM.AppliedIndex() - i0,
	}, nil
}

// submitHTTP posts task i to base/v1/tasks and returns its id.
func submitHTTP(ctx context.Context, client *http.Client, base string, i int) (string, error) {
	body, _ := json.Marshal(benchSpec(i))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/tasks", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d-%08d", time.Now().UnixNano(), i))
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("submit task %d: %w", i, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("submit task %d: %s: %s", i, resp.Status, b)
	}
	var tr api.TaskResponse
	if err := json.Unmarshal(b, &tr); err != nil || tr.Task == nil {
		return "", fmt.Errorf("submit task %d: bad answer %s", i, b)
	}
	return tr.Task.ID, nil
}
