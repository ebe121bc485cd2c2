package chaos

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model of one task's status as clients see it.
//
// A task is a register the cluster moves forward on its own: it is
// created by the submission, then runs along the lifecycle (queued →
// delegated → in_progress → a terminal status) and, within a status,
// through the pipeline's steps. Clients only submit and read. So the
// model's state is the furthest point (status, step) the task is known to
// have reached; a read is legal if what it returns is not behind that
// point (the cluster may have moved on since; it may never move back),
// and it advances the state to what it returned. A submission (or its
// idempotent replay) is legal first, and returns the task's creation. In
// any linearization, the reads of a task must then be monotonic: a
// consistent read that returned an older state after a newer one had been
// returned to anyone (with real-time order between them) is a violation,
// as is a read showing a task before its submission returned.

// taskPoint is the model's state: how far a task has gone.
type taskPoint struct {
	Exists bool
	Status string
	Step   string
}

func (p taskPoint) String() string {
	if !p.Exists {
		return "absent"
	}
	if p.Step == "" {
		return p.Status
	}
	return p.Status + "/" + p.Step
}

// notBehind reports whether next can follow cur.
func notBehind(cur, next taskPoint) bool {
	if !cur.Exists {
		return true
	}
	cr, nr := statusRank(cur.Status), statusRank(next.Status)
	switch {
	case nr != cr:
		return nr > cr
	case Terminal(cur.Status):
		return next.Status == cur.Status
	default:
		return stepOrder(next.Step) >= stepOrder(cur.Step)
	}
}

// modelInput is an operation's input.
type modelInput struct {
	Kind   OpKind
	TaskID string
}

// TaskModel is the porcupine model, partitioned by task.
func TaskModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var ids []string
			for _, op := range h {
				id := op.Input.(modelInput).TaskID
				if _, ok := by[id]; !ok {
					ids = append(ids, id)
				}
				by[id] = append(by[id], op)
			}
			sort.Strings(ids)
			out := make([][]porcupine.Operation, 0, len(ids))
			for _, id := range ids {
				out = append(out, by[id])
			}
			return out
		},
		Init: func() any { return taskPoint{} },
		Step: func(state, input, output any) (bool, any) {
			cur, in, out := state.(taskPoint), input.(modelInput), output.(taskPoint)
			if !out.Exists {
				// A consistent read answering 404 for an acknowledged task
				// is legal only before the task was created.
				return !cur.Exists && in.Kind == OpRead, cur
			}
			if !notBehind(cur, out) {
				return false, cur
			}
			return true, out
		},
		DescribeOperation: func(input, output any) string {
			in := input.(modelInput)
			return fmt.Sprintf("%s(%s) → %s", in.Kind, in.TaskID, output.(taskPoint))
		},
		DescribeState: func(state any) string { return state.(taskPoint).String() },
	}
}

// porcupineOps turns the history's operations into porcupine's.
func porcupineOps(ops []Op, origin time.Time) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.TaskID == "" {
			continue
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    modelInput{Kind: op.Kind, TaskID: op.TaskID},
			Call:     op.Call.Sub(origin).Nanoseconds(),
			Output:   taskPoint{Exists: op.Status != "", Status: op.Status, Step: op.Step},
			Return:   op.Return.Sub(origin).Nanoseconds(),
		})
	}
	return out
}

// LinearizabilityResult is what porcupine said.
type LinearizabilityResult struct {
	Result     string `json:"result"` // ok, illegal, unknown (timed out)
	Operations int    `json:"operations"`
	Tasks      int    `json:"tasks"`
	info       porcupine.LinearizationInfo
}

// CheckLinearizable runs porcupine over the operations, partitioned by
// task, within timeout.
func CheckLinearizable(ops []Op, timeout time.Duration) (LinearizabilityResult, []Violation) {
	var origin time.Time
	for _, op := range ops {
		if origin.IsZero() || op.Call.Before(origin) {
			origin = op.Call
		}
	}
	pops := porcupineOps(ops, origin)
	tasks := map[string]bool{}
	for _, op := range pops {
		tasks[op.Input.(modelInput).TaskID] = true
	}
	res, info := porcupine.CheckOperationsVerbose(TaskModel(), pops, timeout)
	lr := LinearizabilityResult{Result: string(res), Operations: len(pops), Tasks: len(tasks), info: info}
	switch res {
	case porcupine.Ok:
		return lr, nil
	case porcupine.Illegal:
		return lr, []Violation{{Check: NameLinearizable, Detail: fmt.Sprintf("the status history clients saw through consistent reads is not linearizable (%d operations on %d tasks)%s", len(pops), len(tasks), illegalTasks(pops))}}
	default:
		return lr, []Violation{{Check: NameLinearizable, Detail: fmt.Sprintf("porcupine did not decide within %s", timeout)}}
	}
}

// illegalTasks names the tasks whose own history porcupine rejects.
func illegalTasks(pops []porcupine.Operation) string {
	m := TaskModel()
	var bad []string
	for _, part := range m.Partition(pops) {
		if !porcupine.CheckOperations(porcupine.Model{Init: m.Init, Step: m.Step}, part) {
			bad = append(bad, part[0].Input.(modelInput).TaskID)
		}
		if len(bad) == 5 {
			break
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("; tasks %v", bad)
}

// WriteVisualization writes porcupine's HTML view of the check.
func (r LinearizabilityResult) WriteVisualization(w io.Writer) error {
	return porcupine.Visualize(TaskModel(), r.info, w)
}
