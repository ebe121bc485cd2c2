package fsm

import (
	"fmt"
	"time"
)

// The step table: one declaration per step says everything Apply, the
// runner, the sweeper, the importer and the dashboard need to know about
// it. Adding a step is one entry here plus, for an effect step, one
// handler (handlers.Handlers): nothing else switches on the step.

// StepKind says how a step is run.
type StepKind int

// Step kinds.
const (
	// KindDecided steps only read replicated state: the runner commits
	// DecideStep and Apply decides, in one commit with no claim.
	KindDecided StepKind = iota + 1
	// KindEffect steps call out: StepStarted (the claim), the call with an
	// idempotency key derived from (task, step), then StepResult.
	KindEffect
	// KindWaiting steps wait for a callback under a deadline alarm.
	KindWaiting
)

// String names the kind as the API and the dashboard show it.
func (k StepKind) String() string {
	switch k {
	case KindDecided:
		return "decided"
	case KindEffect:
		return "effect"
	case KindWaiting:
		return "waiting"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Callback names the agent callback that completes a waiting step.
type Callback string

// Callbacks that complete steps.
const (
	// CallbackWorkspaceReady: the agent's workspace ready callback.
	CallbackWorkspaceReady Callback = "workspace_ready"
	// CallbackRunFinished: the agent's task status callback saying the
	// run is over and the task awaits follow-ups.
	CallbackRunFinished Callback = "run_finished"
)

// StatusChange is the status a task takes when a step is done (when its
// current status allows it), and why.
type StatusChange struct {
	To     Status
	Reason string
	// Started stamps the task's StartedAt: its agent works from here on.
	Started bool
}

// StepSpec declares one step.
type StepSpec struct {
	Step  Step
	Label string
	Kind  StepKind
	// Execution: one of the pipeline's execution steps, in table order (the
	// others are pseudo-steps a task runs outside its pipeline: cleanup,
	// adoption).
	Execution bool
	// Timeout is the step's overall bound under a task's policy: a
	// waiting step's deadline, an effect step's limit on polling; nil:
	// none.
	Timeout func(Policy) time.Duration
	// StartsRun: entering the step begins a new run, so nothing of the
	// last run's VM resources carries over.
	StartsRun bool
	// Enter prepares the state as a task enters the step; it may move the
	// task on at once (an early callback).
	Enter func(f *FSM, t *Task, at time.Time)
	// Decide runs a decided step inside Apply.
	Decide func(f *FSM, t *Task, leader string, at time.Time)
	// Store keeps what an attempt learned (on success, poll and retry).
	Store func(f *FSM, t *Task, d StepData, at time.Time)
	// Succeeded is what a successful attempt changes besides the advance.
	Succeeded func(f *FSM, t *Task, at time.Time)
	// Result replaces the ordinary handling of a result (pseudo-steps).
	Result func(f *FSM, t *Task, c StepResult)
	// HandlerOptional: without a handler the step has nothing to do and
	// succeeds (cleanup, where there is no cloud); other effect steps fail.
	HandlerOptional bool
	// Done is the status change once the step is done (zero: none).
	Done StatusChange
	// CompletedBy is the callback that completes a waiting step.
	CompletedBy Callback
	// Expired is what a waiting step's deadline means: the run completes
	// (ExpiredCompletes) or the task fails with ExpiredError.
	ExpiredCompletes bool
	ExpiredError     string
	// Adopted: a task imported at this step is adopted (reality is looked
	// at first) rather than entered at it.
	Adopted bool
	// Reconciled: while a task is at this step the leader asks the agent
	// what became of its run (ReconcileRun): a finished run completes the
	// step as its callback would; a lost one fails the task or, with
	// LostCompletes (the run's work is done), completes it.
	Reconciled    bool
	LostCompletes bool
}

// table is the step table, execution steps first in pipeline order; set in
// init because its functions read it.
var (
	table    []StepSpec
	stepSpec map[Step]*StepSpec
)

func init() {
	table = []StepSpec{
		{Step: StepNodeSelection, Label: "Node selection", Kind: KindDecided, Execution: true, StartsRun: true,
			Decide: (*FSM).decideNodeSelection},
		{Step: StepNodeProvisioning, Label: "Node provisioning", Kind: KindEffect, Execution: true,
			Timeout: func(p Policy) time.Duration { return p.ProvisionTimeout }, Store: (*FSM).storeServer},
		{Step: StepNodeAgentReady, Label: "Node agent ready", Kind: KindEffect, Execution: true, Adopted: true,
			Timeout: func(p Policy) time.Duration { return p.AgentReadyTimeout }, Succeeded: (*FSM).markNodeReady},
		{Step: StepWorkspaceCreate, Label: "Workspace creation", Kind: KindEffect, Execution: true, Adopted: true,
			Enter: (*FSM).enterWorkspaceCreation,
			Done:  StatusChange{To: StatusDelegated, Reason: "workspace creation accepted"}},
		{Step: StepWorkspaceReady, Label: "Workspace ready", Kind: KindWaiting, Execution: true, Adopted: true,
			Timeout: func(p Policy) time.Duration { return p.WorkspaceReadyTimeout },
			Enter:   (*FSM).enterWorkspaceReady, CompletedBy: CallbackWorkspaceReady},
		{Step: StepAgentSession, Label: "Agent session", Kind: KindEffect, Execution: true, Adopted: true,
			Store: (*FSM).storeSession,
			Done:  StatusChange{To: StatusInProgress, Reason: "agent session started", Started: true}},
		{Step: StepRunning, Label: "Running", Kind: KindWaiting, Execution: true, Adopted: true,
			Timeout:     func(p Policy) time.Duration { return p.MaxExecution },
			Enter:       (*FSM).enterRunning,
			CompletedBy: CallbackRunFinished, ExpiredError: "max execution time exceeded", Reconciled: true},
		{Step: StepAwaitingFollowup, Label: "Awaiting follow-up", Kind: KindWaiting, Execution: true, Adopted: true,
			Timeout:          func(p Policy) time.Duration { return p.IdleTimeout },
			ExpiredCompletes: true, Reconciled: true, LostCompletes: true},
		{Step: StepCleanup, Label: "Cleanup", Kind: KindEffect, Result: (*FSM).cleanupResult, HandlerOptional: true},
		{Step: StepAdopt, Label: "Adoption", Kind: KindEffect, Result: (*FSM).adoptResult},
	}
	stepSpec = make(map[Step]*StepSpec, len(table))
	AllSteps = AllSteps[:0]
	for i := range table {
		s := &table[i]
		stepSpec[s.Step] = s
		if s.Execution {
			AllSteps = append(AllSteps, s.Step)
		}
	}
}

// StepCleanup is the pseudo-step that runs after a task ends (failed,
// cancelled or completed): stop the workspace, release the node. It is
// claimed and fenced like any step but is not an execution step: the
// task's Step is already cleared.
const StepCleanup Step = "cleanup"

// SpecOf returns a step's declaration; false for StepNone and unknown steps.
func SpecOf(s Step) (*StepSpec, bool) {
	sp, ok := stepSpec[s]
	return sp, ok
}

// StepTable returns every step's declaration, execution steps first in
// pipeline order (a copy).
func StepTable() []StepSpec { return append([]StepSpec(nil), table...) }

// KindOf returns how a step runs (0 for StepNone and unknown steps).
func KindOf(s Step) StepKind {
	if sp, ok := stepSpec[s]; ok {
		return sp.Kind
	}
	return 0
}

// timeout is the step's overall bound under p (0: none).
func (sp *StepSpec) timeout(p Policy) time.Duration {
	if sp.Timeout == nil {
		return 0
	}
	return sp.Timeout(p)
}

// stepOf is SpecOf for steps Apply already knows to be in the table; an
// unknown step (a newer binary's) gets an empty effect declaration.
func stepOf(s Step) *StepSpec {
	if sp, ok := stepSpec[s]; ok {
		return sp
	}
	return &StepSpec{Step: s, Kind: KindEffect}
}

// completedBy is the step a callback completes.
func completedBy(cb Callback) Step {
	for i := range table {
		if table[i].CompletedBy == cb {
			return table[i].Step
		}
	}
	return StepNone
}

// nextStep is the execution step after s (StepNone after the last).
func nextStep(s Step) Step {
	o := s.Order()
	if o <= 0 || o >= len(AllSteps) {
		return StepNone
	}
	return AllSteps[o]
}
