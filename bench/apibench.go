package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

// APIOptions sizes the API latency benchmark.
type APIOptions struct {
	Dir string
	// Rate is the submissions per second (open loop: sent on a fixed
	// schedule whatever the answers' latency), for Duration per target.
	Rate     int
	Duration time.Duration
}

// APIResult holds submit latency (request sent → 202 read) on the leader
// and through a follower, which forwards to the leader.
type APIResult struct {
	Rate                     int
	Requests                 int
	LeaderP50, LeaderP99     time.Duration
	FollowerP50, FollowerP99 time.Duration
}

// ForwardOverheadP50 is the follower's median minus the leader's.
func (r APIResult) ForwardOverheadP50() time.Duration { return r.FollowerP50 - r.LeaderP50 }

// APILatency measures POST /v1/tasks latency at a fixed total request
// rate, the requests alternating between the leader and a follower (which
// forwards to the leader), so that both see the same background. The
// runner parks each task at its first effect step (decision, claim, poll
// result: three commits), so that the figure is the API's and not a
// pipeline backlog's.
func APILatency(ctx context.Context, opts APIOptions) (APIResult, error) {
	c, err := startCluster(ctx, clusterOptions{Dir: filepath.Join(opts.Dir, "api"), Handlers: parkHandlers,
		Policy: benchPolicy(), Settings: benchSettings()})
	if err != nil {
		return APIResult{}, err
	}
	defer c.close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	res := APIResult{Rate: opts.Rate}
	targets := []*server.Server{c.leader(), c.follower()}
	// Warm the connection pools and the forwarding client first.
	for i := 0; i < 20; i++ {
		if _, err := submitHTTP(ctx, client, targets[i%2].URL, 10_000_000+i); err != nil {
			return res, err
		}
	}
	var lats [2]Latencies
	_, n, err := openLoop(ctx, opts.Rate, opts.Duration, func(i int) error {
		t0 := time.Now()
		_, err := submitHTTP(ctx, client, targets[i%2].URL, i)
		lats[i%2].Add(time.Since(t0))
		return err
	})
	if err != nil {
		return res, err
	}
	res.Requests = n
	res.LeaderP50, res.LeaderP99 = lats[0].Percentile(50), lats[0].Percentile(99)
	res.FollowerP50, res.FollowerP99 = lats[1].Percentile(50), lats[1].Percentile(99)
	return res, nil
}

// parkHandlers answer every effect step with "not done, look again in
// five minutes": a task stays at node_provisioning.
func parkHandlers(func() applyFunc) map[fsm.Step]runner.Handler {
	park := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(5 * time.Minute) })
	hs := map[fsm.Step]runner.Handler{}
	for _, s := range fsm.AllSteps {
		if fsm.KindOf(s) == fsm.KindEffect {
			hs[s] = park
		}
	}
	return hs
}

// openLoop starts op rate times a second for d, each in its own goroutine,
// and waits for all of them.
func openLoop(ctx context.Context, rate int, d time.Duration, op func(i int) error) (*Latencies, int, error) {
	lat := &Latencies{}
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for i := 0; i < n; i++ {
		// Latency counts from the scheduled send time, so a sender that
		// falls behind shows up in the figures instead of hiding them.
		t0 := start.Add(time.Duration(i) * interval)
		if w := time.Until(t0); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := op(i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("request %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			lat.Add(time.Since(t0))
		}()
	}
	wg.Wait()
	return lat, n, firstErr
}
