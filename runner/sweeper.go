package runner

import (
	"fmt"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// sweeper is the leader's periodic safety net. It acts only on tasks the
// alarm machinery has let down — a task in a run without an alarm, or one
// past its status's stuck threshold whose alarm is also long overdue — so
// in a healthy run it never acts.
func (lt *leaderTerm) sweeper() {
	defer lt.wg.Done()
	for {
		t := lt.r.cfg.Clock.NewTimer(lt.r.cfg.SweepInterval)
		select {
		case <-lt.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		lt.sweep()
	}
}

// sweep runs one pass; it returns the number of tasks acted on.
func (lt *leaderTerm) sweep() int {
	now := lt.now()
	var cmds []fsm.Command
	lt.r.fsm.ForEachTask(func(t *fsm.Task) bool {
		if cmd := lt.r.sweepTask(t, now); cmd != nil {
			cmds = append(cmds, cmd)
		}
		return true
	})
	n := 0
	for _, cmd := range cmds {
		if _, ok := lt.commit(cmd, &lt.r.stats.SweeperActions); ok {
			n++
			lt.r.log.Warn("sweeper acted", "command", fmt.Sprintf("%T", cmd), "detail", fmt.Sprintf("%+v", cmd))
		}
	}
	return n
}

// sweepTask decides what, if anything, the sweeper does about one task.
func (r *Runner) sweepTask(t *fsm.Task, now time.Time) fsm.Command {
	inRun := t.Status == fsm.StatusQueued || t.Status == fsm.StatusDelegated || t.Status == fsm.StatusInProgress || t.Cleanup
	if !inRun {
		return nil
	}
	if t.Alarm == nil {
		return fsm.Reschedule{TaskID: t.ID, Reason: fmt.Sprintf("found at %s/%s without an alarm", t.Status, t.RunnableStep()), At: now}
	}
	stalled := t.Alarm.Due.Before(now.Add(-2 * r.cfg.SweepInterval))
	if !stalled || t.Cleanup {
		return nil
	}
	var limit time.Duration
	switch t.Status {
	case fsm.StatusQueued:
		limit = r.cfg.StuckQueued
	case fsm.StatusDelegated:
		limit = r.cfg.StuckDelegated
	default:
		limit = r.cfg.StuckInProgress
	}
	since := t.CreatedAt
	if n := len(t.History); n > 0 {
		since = t.History[n-1].At
	}
	if now.Sub(since) <= limit {
		return nil
	}
	return fsm.FailTask{
		TaskID: t.ID,
		Reason: fmt.Sprintf("stuck in %s for %s at step %s", t.Status, now.Sub(since).Round(time.Second), t.Step),
		Diagnostic: fmt.Sprintf("alarm %s due %s, in flight %v, attempt %d, node %q, workspace %q",
			t.Alarm.Kind, t.Alarm.Due.Format(time.RFC3339), t.InFlight, t.Attempt, t.NodeID, t.WorkspaceID),
		Source: fsm.ErrKindSweeper,
		At:     now,
	}
}
