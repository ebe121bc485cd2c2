package fsm

import "fmt"

// Step is a task's execution step. Steps are monotone: a task's step may stay
// or move forward, never back. The empty step means "none": the task has not
// started a run or its run has ended.
type Step string

// The execution steps of REFERENCE.md, in order.
const (
	StepNone             Step = ""
	StepNodeSelection    Step = "node_selection"
	StepNodeProvisioning Step = "node_provisioning"
	StepNodeAgentReady   Step = "node_agent_ready"
	StepWorkspaceCreate  Step = "workspace_creation"
	StepWorkspaceReady   Step = "workspace_ready"
	StepAgentSession     Step = "agent_session"
	StepRunning          Step = "running"
	StepAwaitingFollowup Step = "awaiting_followup"
)

// AllSteps lists the execution steps in pipeline order.
var AllSteps = []Step{
	StepNodeSelection, StepNodeProvisioning, StepNodeAgentReady, StepWorkspaceCreate,
	StepWorkspaceReady, StepAgentSession, StepRunning, StepAwaitingFollowup,
}

// Order is the step's position in the pipeline, from 1; 0 for StepNone and -1
// for an unknown step.
func (s Step) Order() int {
	if s == StepNone {
		return 0
	}
	for i, x := range AllSteps {
		if x == s {
			return i + 1
		}
	}
	return -1
}

// Valid reports whether s is a known step (StepNone included).
func (s Step) Valid() bool { return s.Order() >= 0 }

// ParseStep returns the step named s; "" is StepNone.
func ParseStep(s string) (Step, error) {
	st := Step(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown execution step %q", s)
	}
	return st, nil
}
