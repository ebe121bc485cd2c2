package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Sizes sizes a whole run.
type Sizes struct {
	Clients       []int
	RawDuration   time.Duration
	StepTasks     int
	StepDuration  time.Duration
	E2ETasks      int
	E2EClients    int
	E2EWorkers    []int // runner workers per closed-loop run; 0: the default
	E2ERate       int
	E2ERateTasks  int
	WheelPending  int
	WheelRate     int
	WheelDuration time.Duration
	RebuildTasks  int
	MemoryTasks   int
	SnapshotTasks int
	SnapshotSeed  int
	APIRate       int
	APIDuration   time.Duration
}

// FullSizes are the sizes of `make bench`.
func FullSizes() Sizes {
	return Sizes{
		Clients: []int{1, 16, 64, 256}, RawDuration: 8 * time.Second,
		StepTasks: 6000, StepDuration: 8 * time.Second,
		E2ETasks: 5000, E2EClients: 32, E2EWorkers: []int{32, 0}, E2ERate: 100, E2ERateTasks: 1000,
		WheelPending: 1_000_000, WheelRate: 5000, WheelDuration: 10 * time.Second, RebuildTasks: 1_000_000,
		MemoryTasks: 20000, SnapshotTasks: 1_000_000, SnapshotSeed: 1000,
		APIRate: 200, APIDuration: 15 * time.Second,
	}
}

// SmokeSizes run every harness in a few seconds (CI).
func SmokeSizes() Sizes {
	return Sizes{
		Clients: []int{4}, RawDuration: 300 * time.Millisecond,
		StepTasks: 40, StepDuration: 500 * time.Millisecond,
		E2ETasks: 30, E2EClients: 4, E2EWorkers: []int{4},
		WheelPending: 10000, WheelRate: 1000, WheelDuration: 300 * time.Millisecond, RebuildTasks: 2000,
		MemoryTasks: 200, SnapshotTasks: 2000, SnapshotSeed: 20,
		APIRate: 50, APIDuration: 400 * time.Millisecond,
	}
}

// Parts names the harnesses Run knows, in run order.
var Parts = []string{"raft", "e2e", "wheel", "fsm", "api"}

// Run runs the named parts (all if empty) in dir and writes markdown
// tables to w as each finishes.
func Run(ctx context.Context, w io.Writer, dir string, sz Sizes, parts []string) error {
	want := func(p string) bool { return len(parts) == 0 || slices.Contains(parts, p) }
	host, _ := os.Hostname()
	fmt.Fprintf(w, "tdf bench: %s, GOMAXPROCS %d, %s on %s, started %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0),
		runtime.GOARCH, host, time.Now().UTC().Format(time.RFC3339))
	if want("raft") {
		// Each level runs raw then tdf, back to back, so that the ratio
		// compares two measurements taken under the same background load.
		var raw []Throughput
		var st []StepRow
		for _, c := range sz.Clients {
			r, err := RawRaft(ctx, RawOptions{Dir: filepath.Join(dir, fmt.Sprintf("raw-%d", c)), Clients: []int{c}, Duration: sz.RawDuration, Payload: 256})
			if err != nil {
				return err
			}
			s, err := StepCommits(ctx, StepOptions{Dir: dir, Clients: []int{c}, Tasks: sz.StepTasks, Duration: sz.StepDuration})
			if err != nil {
				return err
			}
			raw, st = append(raw, r...), append(st, s...)
		}
		fmt.Fprintln(w, "| clients | raw raft applies/s | raw p50 / p99 | tdf step commits/s | tdf / raw | tdf raft entries/s | tasks completed in window |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for i, r := range raw {
			s := st[i]
			note := ""
			if s.Drained {
				note = " (backlog ran out)"
			}
			fmt.Fprintf(w, "| %d | %.0f | %s / %s | %.0f | %.2f | %.0f | %d in %s%s |\n", r.Clients, r.PerSec(), ms(r.P50), ms(r.P99),
				s.PerSec(), s.PerSec()/r.PerSec(), s.EntriesPerSec(), s.Completed, s.Elapsed.Round(time.Millisecond), note)
		}
		fmt.Fprintln(w)
	}
	if want("e2e") {
		fmt.Fprintln(w, "| load | runner workers / calls | tasks | completed tasks/s | submitted/s | submit → running p50 / p99 | submit → completed p50 / p99 | raft entries/task |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		runs := []E2EOptions{}
		for _, wk := range sz.E2EWorkers {
			runs = append(runs, E2EOptions{Tasks: sz.E2ETasks, Clients: sz.E2EClients, Workers: wk})
		}
		if sz.E2ERateTasks > 0 {
			runs = append(runs, E2EOptions{Tasks: sz.E2ERateTasks, Rate: sz.E2ERate})
		}
		for _, o := range runs {
			o.Dir, o.Timeout = dir, 10*time.Minute
			r, err := EndToEnd(ctx, o)
			if err != nil {
				return err
			}
			load := fmt.Sprintf("%d clients, closed loop", o.Clients)
			if o.Rate > 0 {
				load = fmt.Sprintf("%d/s open loop", o.Rate)
			}
			fmt.Fprintf(w, "| %s | %d / %d | %d | %.0f | %.0f | %s / %s | %s / %s | %.1f |\n", load, r.Workers, r.Calls, r.Tasks, r.PerSec(), r.SubmitPerSec,
				ms(r.ToRunningP50), ms(r.ToRunningP99), ms(r.ToCompletedP50), ms(r.ToCompletedP99), float64(r.Commits)/float64(r.Tasks))
		}
		fmt.Fprintln(w)
	}
	if want("wheel") {
		r, err := Wheel(ctx, WheelOptions{Pending: sz.WheelPending, Rate: sz.WheelRate, Duration: sz.WheelDuration, RebuildTasks: sz.RebuildTasks})
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "| pending alarms | fires/s | fired | lateness p50 / p99 / max | runner rebuild (tasks) |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		fmt.Fprintf(w, "| %d | %d | %d | %s / %s / %s | %s (%d) |\n\n", r.Pending, sz.WheelRate, r.Fired, ms(r.LatenessP50), ms(r.LatenessP99),
			ms(r.LatenessMax), ms(r.Rebuild), sz.RebuildTasks)
	}
	if want("fsm") {
		mem, err := MemoryPerTask(ctx, sz.MemoryTasks)
		if err != nil {
			return err
		}
		r, err := Snapshot(ctx, SnapshotOptions{Dir: filepath.Join(dir, "snap"), Tasks: sz.SnapshotTasks, Seed: sz.SnapshotSeed, Restart: true})
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "| heap per finished task (driven) | heap per task (restored) | snapshot tasks | bytes | persist | restore | cluster start → ready | follower restart → ready |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		fmt.Fprintf(w, "| %.0f B | %.0f B | %d | %.1f MB | %s | %s | %s | %s |\n\n", mem, r.HeapPerTask, r.Tasks, float64(r.Bytes)/1e6,
			ms(r.Persist), ms(r.Restore), ms(r.ClusterReady), ms(r.FollowerReady))
	}
	if want("api") {
		r, err := APILatency(ctx, APIOptions{Dir: dir, Rate: sz.APIRate, Duration: sz.APIDuration})
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "| total rate (alternating) | requests | leader p50 / p99 | follower p50 / p99 | forwarding overhead p50 |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		fmt.Fprintf(w, "| %d/s | %d | %s / %s | %s / %s | %s |\n\n", r.Rate, r.Requests, ms(r.LeaderP50), ms(r.LeaderP99),
			ms(r.FollowerP50), ms(r.FollowerP99), ms(r.ForwardOverheadP50()))
	}
	return nil
}

// ms formats a duration in milliseconds with two decimals.
func ms(d time.Duration) string {
	return strings.TrimSuffix(fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)), ".00 ms")
}
