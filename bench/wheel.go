package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/timers"
)

// WheelOptions sizes the alarm wheel benchmark.
type WheelOptions struct {
	// Pending alarms sit in the wheel (due in a day) throughout.
	Pending int
	// Rate alarms per second come due for Duration.
	Rate     int
	Duration time.Duration
	// RebuildTasks tasks with a pending alarm are in the FSM a new
	// leader's runner rebuilds its wheel from.
	RebuildTasks int
}

// WheelResult holds the wheel's figures.
type WheelResult struct {
	Pending, Fired int
	// Lateness is fire time minus due time, on the real clock.
	LatenessP50, LatenessP99, LatenessMax time.Duration
	// Rebuild is a runner gaining leadership over RebuildTasks pending
	// tasks until its wheel holds them all and it is started.
	Rebuild time.Duration
}

// Wheel measures firing lateness of the real wheel on the real clock with
// opts.Pending alarms pending and opts.Rate alarms a second coming due, and
// the runner's wheel rebuild on leadership gain.
func Wheel(ctx context.Context, opts WheelOptions) (WheelResult, error) {
	res := WheelResult{Pending: opts.Pending}
	var lat Latencies
	var wg sync.WaitGroup
	n := int(opts.Duration.Seconds() * float64(opts.Rate))
	wg.Add(n)
	w := timers.New(timers.RealClock(), func(owner string, due time.Time) {
		if owner[0] == 'f' {
			lat.Add(time.Since(due))
			wg.Done()
		}
	})
	far := time.Now().Add(24 * time.Hour)
	w.Grow(opts.Pending + n)
	for i := 0; i < opts.Pending; i++ {
		w.Schedule(fmt.Sprintf("task-%016d", i), far.Add(time.Duration(i)*time.Millisecond))
	}
	start := time.Now().Add(500 * time.Millisecond)
	interval := time.Second / time.Duration(opts.Rate)
	for i := 0; i < n; i++ {
		w.Schedule(fmt.Sprintf("fire-%016d", i), start.Add(time.Duration(i)*interval))
	}
	w.Start()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(opts.Duration + time.Minute):
		w.Stop()
		return res, fmt.Errorf("only %d of %d alarms fired", lat.Len(), n)
	}
	w.Stop()
	res.Fired = lat.Len()
	res.LatenessP50, res.LatenessP99, res.LatenessMax = lat.Percentile(50), lat.Percentile(99), lat.Percentile(100)
	w = nil

	rebuild, err := runnerRebuild(ctx, opts.RebuildTasks)
	if err != nil {
		return res, err
	}
	res.Rebuild = rebuild
	return res, nil
}

// noCommits is the committer of a runner that must not commit (its clock
// is before every alarm).
type noCommits struct{}

func (noCommits) ID() string { return "n1" }
func (noCommits) Apply(context.Context, fsm.Command) (*fsm.Result, error) {
	return nil, fmt.Errorf("benchmark runner: no commits expected")
}

// runnerRebuild fills an FSM with n submitted tasks (each with its alarm)
// and times a runner's Run from its start to Started with n alarms.
func runnerRebuild(ctx context.Context, n int) (time.Duration, error) {
	f := fsm.New()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		data, err := fsm.Encode(fsm.SubmitTask{TaskID: fmt.Sprintf("task-%08d", i), Spec: benchSpec(i), Policy: benchPolicy(),
			At: at.Add(time.Duration(i) * time.Millisecond)})
		if err != nil {
			return 0, err
		}
		if r := f.ApplyCommand(uint64(i+1), data); r.Err != nil {
			return 0, r.Err
		}
	}
	clock := timers.NewFakeClock(at.Add(-time.Hour))
	r := runner.New(runner.Config{Clock: clock}, f, noCommits{}, nil)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t0 := time.Now()
	go func() { r.Run(ctx, 1); close(done) }()
	err := waitUntil(ctx, 2*time.Minute, func() bool { return r.Started() })
	took := time.Since(t0)
	if err == nil && r.PendingAlarms() != n {
		err = fmt.Errorf("rebuilt wheel holds %d alarms, want %d", r.PendingAlarms(), n)
	}
	cancel()
	<-done
	return took, err
}
