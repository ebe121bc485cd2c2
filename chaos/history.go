// Package chaos hurts a running tdf cluster — leader kills, pauses and
// partitions — while a workload submits tasks and reads them back, then
// checks that nothing was lost, nothing was done twice, and that what
// clients saw is linearizable.
//
// The pieces:
//
//   - Target (target.go): the cluster under test; ProcessTarget runs three
//     `tdf server` processes and a `tdf fakecloud` on loopback.
//   - Workload (workload.go): clients that submit through random nodes with
//     an Idempotency-Key, re-send unknown outcomes with the same key, and
//     read task status back with consistent reads; every operation lands in
//     the History with its call and return times.
//   - Nemesis (nemesis.go): kills, pauses and isolates the leader, and
//     records when each fault happened, when a new leader appeared, and when
//     that leader ran its first step.
//   - Check (checker.go): pure functions over the History and the final
//     reads of the cluster and the fake cloud's ledger.
//   - Run (run.go): the three together, and the JSON and text report.
package chaos

import (
	"time"
)

// OpKind is what a client operation did.
type OpKind string

const (
	// OpSubmit is POST /v1/tasks, re-sent with the same Idempotency-Key
	// until a node answers 202 (one Op for all its attempts).
	OpSubmit OpKind = "submit"
	// OpRead is GET /v1/tasks/{id}?consistent=true.
	OpRead OpKind = "read"
)

// Op is one client operation as the client saw it. Times are the client's
// clock (call: the first attempt was sent; ret: the answer was received).
type Op struct {
	Client int       `json:"client"`
	Kind   OpKind    `json:"kind"`
	Key    string    `json:"key,omitempty"` // the submission's Idempotency-Key
	TaskID string    `json:"task_id"`
	Node   string    `json:"node"` // the node that answered
	Call   time.Time `json:"call"`
	Return time.Time `json:"return"`
	// Attempts is how many requests the operation took (submissions
	// re-sent after a 503 or a transport error).
	Attempts int `json:"attempts,omitempty"`
	// Output: the task's status and execution step in the answer.
	Status string `json:"status"`
	Step   string `json:"step,omitempty"`
}

// Outage is a window in which one client's requests failed (503 or no
// answer) until one succeeded.
type Outage struct {
	Client int           `json:"client"`
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Length time.Duration `json:"length_ns"`
	// Failures is how many requests failed in the window.
	Failures int `json:"failures"`
}

// FaultKind is what the nemesis did.
type FaultKind string

const (
	FaultKill      FaultKind = "kill"
	FaultPause     FaultKind = "pause"
	FaultPartition FaultKind = "partition"
	// FaultDiskFull fills the leader's data dir's filesystem (diskfull.go).
	FaultDiskFull FaultKind = "disk_full"
)

// Fault is one fault the nemesis injected on a leader.
type Fault struct {
	N      int       `json:"n"`
	Kind   FaultKind `json:"kind"`
	Victim string    `json:"victim"`
	// At is just before the fault (SIGKILL, SIGSTOP, isolation).
	At time.Time `json:"at"`
	// Held is how long the victim stayed down, paused or isolated.
	Held time.Duration `json:"held_ns"`
	// NewLeader is the first leader other than the victim a survivor
	// named; LeaderAfter is the time from At to that answer (-1: none).
	NewLeader   string        `json:"new_leader,omitempty"`
	LeaderAfter time.Duration `json:"leader_after_ns"`
	// FirstStepAfter is the time from At to the earliest step attempt
	// the new leader started (from the task timelines; -1: none seen).
	FirstStepAfter time.Duration `json:"first_step_after_ns"`
	FirstStepTask  string        `json:"first_step_task,omitempty"`
	// InFlight counts the victim's step attempts that were claimed before
	// the fault and had no result yet at its moment (from the timelines).
	InFlight      int    `json:"in_flight"`
	FirstStepName string `json:"first_step,omitempty"`
	Error         string `json:"error,omitempty"`
}

// History is everything the run recorded.
type History struct {
	Ops     []Op     `json:"ops"`
	Outages []Outage `json:"outages"`
	Faults  []Fault  `json:"faults"`
	// Submitted counts submissions acknowledged (202); Abandoned lists
	// keys whose submission never got an answer before the workload
	// stopped (their outcome is unknown; they may exist).
	Submitted int       `json:"submitted"`
	Abandoned []string  `json:"abandoned,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
}
