package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/fsm"
)

// BenchmarkScrapeTaskGauges: collecting tdf_tasks{status} and
// tdf_tasks_ended_total costs the same with a million tasks as with a
// thousand (the FSM keeps the counts as tasks change; no scan).
func BenchmarkScrapeTaskGauges(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		f := stateWithTasks(b, n)
		reg := prometheus.NewRegistry()
		reg.MustRegister(&stateCollector{fsm: f})
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// stateWithTasks is an FSM holding n tasks, one in eight cancelled.
func stateWithTasks(b *testing.B, n int) *fsm.FSM {
	b.Helper()
	f := fsm.New()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: "x", Repository: "github.com/acme/app"}
	idx := uint64(0)
	apply := func(c fsm.Command) {
		data, err := fsm.Encode(c)
		if err != nil {
			b.Fatal(err)
		}
		idx++
		if res := f.ApplyCommand(idx, data); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	for i := range n {
		id := fmt.Sprintf("t%08d", i)
		apply(fsm.SubmitTask{TaskID: id, Spec: spec, At: at})
		if i%8 == 0 {
			apply(fsm.CancelTask{TaskID: id, At: at})
		}
	}
	return f
}
