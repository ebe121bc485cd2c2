package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

// StepOptions sizes the step commit benchmark.
type StepOptions struct {
	Dir string
	// Clients lists the runner worker counts (the concurrency), each
	// measured on a fresh cluster.
	Clients []int
	// Tasks is the backlog per level; it should outlast Duration. A level
	// gets at least backlogPerWorker tasks per worker.
	Tasks    int
	Duration time.Duration
}

// StepRow is one concurrency level of the step commit benchmark.
type StepRow struct {
	Clients int
	// Commits is how many commands the runner committed in Elapsed:
	// claims, results, decisions, timeouts and the fakes' callbacks.
	Commits int
	// Entries is how many raft entries carried them (group commit packs
	// several commands into one).
	Entries   int
	Elapsed   time.Duration
	Completed int
	// Drained is set when the backlog ran out before Duration.
	Drained bool
}

// EntriesPerSec is raft entries per second.
func (r StepRow) EntriesPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Entries) / r.Elapsed.Seconds()
}

// PerSec is commands committed per second.
func (r StepRow) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Commits) / r.Elapsed.Seconds()
}

// StepCommits measures the runner's commit rate through the real FSM: a
// three-node cluster whose runner has `clients` workers is given a backlog
// of tasks, and every worker drives tasks through the pipeline with the
// zero-delay fakes, one commit at a time, as raw raft's clients do. The
// rate is the leader's applied-index growth once the backlog is in.
func StepCommits(ctx context.Context, opts StepOptions) ([]StepRow, error) {
	var out []StepRow
	for _, c := range opts.Clients {
		row, err := stepLevel(ctx, opts, c)
		if errors.Is(err, errLeaderChanged) {
			// An election on an overloaded machine spoils the window:
			// measure the level again, once, on a fresh cluster.
			row, err = stepLevel(ctx, opts, c)
		}
		if err != nil {
			return out, fmt.Errorf("step commits at %d workers: %w", c, err)
		}
		out = append(out, row)
	}
	return out, nil
}

func stepLevel(ctx context.Context, opts StepOptions, workers int) (StepRow, error) {
	c, err := startCluster(ctx, clusterOptions{Dir: filepath.Join(opts.Dir, fmt.Sprintf("steps-%d", workers)), Workers: workers, Calls: workers,
		Handlers: zeroDelayHandlers, Policy: benchPolicy(), Settings: benchSettings()})
	if err != nil {
		return StepRow{}, err
	}
	defer c.close()
	leader := c.leader()
	tr := newTracker(leader.FSM)
	defer tr.stop()
	// The backlog: every task submitted at once (the runner starts on them
	// meanwhile). The window opens when the last submission has committed,
	// so that it holds only the runner's commits.
	tasks := max(opts.Tasks, backlogPerWorker*workers)
	if err := submitDirect(ctx, c.applyOnLeader, tasks, 64); err != nil {
		return StepRow{}, err
	}
	if c.leader() != leader {
		return StepRow{}, errLeaderChanged
	}
	i0, k0 := leader.FSM.AppliedIndex(), c.commands(leader)
	t0 := time.Now()
	done0, _ := tr.counts()
	end := t0.Add(opts.Duration)
	drained := false
	for time.Now().Before(end) {
		if done, failed := tr.counts(); done+failed >= tasks-workers {
			// Fewer tasks left than workers: the concurrency would drop.
			drained = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	i1, k1 := leader.FSM.AppliedIndex(), c.commands(leader)
	if c.leader() != leader {
		return StepRow{}, errLeaderChanged
	}
	done, failed := tr.counts()
	if failed > 0 {
		return StepRow{}, fmt.Errorf("%d tasks failed, e.g. %s", failed, tr.firstFailure())
	}
	return StepRow{Clients: workers, Commits: int(k1 - k0), Entries: int(i1 - i0), Elapsed: elapsed, Completed: done - done0, Drained: drained}, nil
}

// backlogPerWorker sizes a level's backlog so that its window ends before
// the backlog does (at 256 workers 6,000 tasks ran out in 3–7 s of 8).
const backlogPerWorker = 40

var errLeaderChanged = errors.New("the leader changed during the measurement")

// applyOnLeader applies cmd on whichever node leads, waiting out an
// election (commands sent this way carry a request id or are fenced, so a
// re-send after an unknown outcome is safe).
func (c *tdfCluster) applyOnLeader(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		if l := c.leader(); l != nil {
			var res *fsm.Result
			res, err = l.Node.Apply(ctx, cmd)
			if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
				return res, err
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader accepted the command within a minute: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// submitDirect commits n SubmitTask commands on the leader from `clients`
// goroutines, each task for its own user (so each provisions its own node
// and runs all eight steps).
func submitDirect(ctx context.Context, apply applyFunc, n, clients int) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	policy := benchPolicy()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cmd := fsm.SubmitTask{RequestID: fmt.Sprintf("req-%08d", i), TaskID: fmt.Sprintf("task-%08d", i),
					Spec: benchSpec(i), Policy: policy, At: time.Now().UTC().Round(0)}
				res, err := apply(ctx, cmd)
				if err == nil && res.Err != nil {
					err = res.Err
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("submit task %d: %w", i, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func benchSpec(i int) fsm.TaskSpec {
	return fsm.TaskSpec{ProjectID: "bench", UserID: fmt.Sprintf("u%07d", i), Repository: "github.com/acme/app",
		Prompt: "fix the flaky test in the payment service and open a pull request"}
}

// waitUntil polls cond every 5 ms until it holds or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
