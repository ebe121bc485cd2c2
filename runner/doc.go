// Package runner is the leader-side step runner: it mirrors the FSM's task
// alarms into an alarm wheel, and when an alarm fires it runs the task's
// current step and commits what happened.
//
// The protocol (DESIGN.md, "The flow of one task"):
//
//   - Steps that only read replicated state are decided inside Apply: the
//     runner commits fsm.DecideStep, nothing else.
//   - Steps with external effects commit fsm.StepStarted (the claim) before
//     any effect, call out with an idempotency key derived from (task,
//     step) — never from the attempt, so a re-dispatched attempt asks for
//     the same effect — and then commit fsm.StepResult. The FSM fences the
//     result: one from an older attempt or term changes nothing.
//   - Waiting steps have a deadline alarm; when it fires the runner commits
//     fsm.StepTimeout.
//
// The runner runs only on the leader, from leadership establishment (after
// raft's Barrier) until leadership is lost: it rebuilds the wheel from every
// alarm in the FSM, fires what is overdue and re-dispatches every claimed
// step without a result as a new attempt. On loss it cancels every handler
// context, stops the wheel and waits for the workers.
//
// Retry policy lives here, not in the FSM: the leader classifies an error
// (transient or permanent), picks the backoff with jitter and commits the
// due time, so replicas agree on it. A periodic sweeper is the safety net
// for tasks found without an alarm or stalled past the stuck thresholds.
package runner
