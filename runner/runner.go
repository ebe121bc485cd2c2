package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/timers"
)

// Committer commits commands through raft; cluster.Node implements it.
type Committer interface {
	ID() string
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
}

// Stats counts what the runner did, for metrics and tests.
type Stats struct {
	// Claims and Results count committed StepStarted and StepResult.
	Claims, Results atomic.Uint64
	// Decisions count DecideStep, Timeouts StepTimeout commits.
	Decisions, Timeouts atomic.Uint64
	// Redispatched counts claims taken over from an earlier attempt.
	Redispatched atomic.Uint64
	// Fenced counts commands of ours the FSM rejected as stale.
	Fenced atomic.Uint64
	// SweeperActions counts tasks the sweeper rescheduled or failed.
	SweeperActions atomic.Uint64
	// NodeAlarms counts node expiries and server deletion attempts.
	NodeAlarms atomic.Uint64
}

// Runner runs steps on the leader. One Runner serves every term a node
// leads; Run is its per-term body.
type Runner struct {
	cfg      Config
	log      hclog.Logger
	fsm      *fsm.FSM
	node     Committer
	handlers map[fsm.Step]Handler
	running  atomic.Bool
	stats    Stats
	wheel    atomic.Pointer[timers.Wheel] // the current term's, for metrics
	// started is set once a term's wheel is rebuilt and its workers run.
	started atomic.Bool
}

// Started reports whether the runner leads a term with its wheel rebuilt
// (benchmarks time a new leader's takeover by it).
func (r *Runner) Started() bool { return r.started.Load() }

// New returns a runner over the local FSM. handlers maps each effect step
// (and fsm.StepCleanup) to its handler; a step without one fails
// permanently, except cleanup, which then has nothing to do.
func New(cfg Config, f *fsm.FSM, node Committer, handlers map[fsm.Step]Handler) *Runner {
	cfg.fill()
	return &Runner{cfg: cfg, log: cfg.Logger.Named("runner"), fsm: f, node: node, handlers: handlers}
}

// Stats returns the runner's counters.
func (r *Runner) Stats() *Stats { return &r.stats }

// PendingAlarms is the number of alarms in the wheel (0 when not leading).
func (r *Runner) PendingAlarms() int {
	if w := r.wheel.Load(); w != nil {
		return w.Len()
	}
	return 0
}

// Run is the leader hook: it runs steps until ctx is cancelled (leadership
// lost), then stops the wheel and waits for every handler to return.
func (r *Runner) Run(ctx context.Context, term uint64) {
	if !r.running.CompareAndSwap(false, true) {
		// cluster guarantees one leader loop at a time; this is the check.
		r.log.Error("runner already running; refusing a second one", "term", term)
		return
	}
	defer r.running.Store(false)
	lt := &leaderTerm{r: r, term: term, ctx: ctx, queue: newWorkQueue(), calls: make(chan struct{}, r.cfg.Calls)}
	lt.run()
}

// leaderTerm is the runner's state for one term.
type leaderTerm struct {
	r     *Runner
	term  uint64
	ctx   context.Context
	wheel *timers.Wheel
	queue *workQueue
	wg    sync.WaitGroup
	// calls holds a token per handler running (Config.Calls).
	calls chan struct{}
}

func (lt *leaderTerm) run() {
	r := lt.r
	start := time.Now()
	lt.wheel = timers.New(r.cfg.Clock, lt.fire)
	lt.wheel.Grow(r.fsm.TaskCount())
	r.wheel.Store(lt.wheel)
	defer r.wheel.Store(nil)
	var claimed []string
	// Rebuild the wheel and subscribe to changes in one step, so that no
	// change falls between the scan and the subscription.
	stopWatch := r.fsm.Watch(func(t *fsm.Task) {
		if t.Alarm != nil {
			lt.wheel.Schedule(t.ID, t.Alarm.Due)
		}
		if t.InFlight {
			claimed = append(claimed, t.ID)
		}
	}, func(n *fsm.Node) {
		if n.Alarm != nil {
			lt.wheel.Schedule(nodeOwner+n.ID, n.Alarm.Due)
		}
	}, func(c fsm.Change) {
		owner, alarm := "", (*fsm.Alarm)(nil)
		switch {
		case c.Task != nil:
			owner, alarm = c.Task.ID, c.Task.Alarm
		case c.Node != nil:
			owner, alarm = nodeOwner+c.Node.ID, c.Node.Alarm
		default:
			return
		}
		if alarm != nil {
			lt.wheel.Schedule(owner, alarm.Due)
		} else {
			lt.wheel.Cancel(owner)
		}
	})
	r.log.Info("runner started", "term", lt.term, "alarms", lt.wheel.Len(), "claimed", len(claimed), "rebuild", time.Since(start))
	for i := 0; i < r.cfg.Workers; i++ {
		lt.wg.Add(1)
		go lt.worker()
	}
	// A claim without a result was cut short by the previous leader: run
	// it again now, as a new attempt, rather than at its claim timeout.
	for _, id := range claimed {
		lt.queue.push(workItem{taskID: id, force: true})
	}
	lt.wheel.Start()
	lt.wg.Add(1)
	go lt.sweeper()
	r.started.Store(true)
	defer r.started.Store(false)

	<-lt.ctx.Done()
	lt.wheel.Stop()
	stopWatch()
	lt.queue.close()
	lt.wg.Wait()
	r.log.Info("runner stopped", "term", lt.term)
}

// fire runs on the wheel's goroutine for each due alarm.
func (lt *leaderTerm) fire(owner string, due time.Time) {
	if lt.ctx.Err() != nil {
		return // leadership lost: the next leader fires it
	}
	if f := lt.r.cfg.OnFire; f != nil {
		f(lt.r.cfg.Clock.Now().Sub(due))
	}
	lt.queue.push(workItem{taskID: owner})
}

func (lt *leaderTerm) worker() {
	defer lt.wg.Done()
	for {
		it, ok := lt.queue.pop()
		if !ok {
			select {
			case <-lt.ctx.Done():
				return
			case <-lt.queue.notify:
				continue
			}
		}
		lt.process(it)
		lt.queue.done(it.taskID)
		if lt.ctx.Err() != nil {
			return
		}
	}
}

func (lt *leaderTerm) now() time.Time { return lt.r.cfg.Clock.Now().UTC().Round(0) }

// nodeOwner prefixes a node's id to name its alarm in the wheel (task ids
// cannot contain a slash).
const nodeOwner = "node/"

// process looks at a task afresh (the FSM is the truth, the fired alarm
// only a hint) and does what its state calls for.
func (lt *leaderTerm) process(it workItem) {
	if id, ok := strings.CutPrefix(it.taskID, nodeOwner); ok {
		lt.processNode(id)
		return
	}
	t, ok := lt.r.fsm.Task(it.taskID)
	if !ok || lt.ctx.Err() != nil {
		return
	}
	now := lt.now()
	step := t.RunnableStep()
	switch {
	case step == fsm.StepNone || t.Alarm == nil:
		return
	case t.InFlight:
		if it.force || !t.Alarm.Due.After(now) {
			lt.r.stats.Redispatched.Add(1)
			lt.runEffect(t)
		}
	case t.Alarm.Due.After(now):
		return // replaced by a later alarm; the wheel fires that one
	case t.Alarm.Kind == fsm.AlarmDeadline:
		lt.commit(fsm.StepTimeout{TaskID: t.ID, Step: t.Step, Due: t.Alarm.Due, At: now}, &lt.r.stats.Timeouts)
	case fsm.KindOf(step) == fsm.KindDecided:
		lt.commit(fsm.DecideStep{TaskID: t.ID, Step: step, Leader: lt.r.node.ID(), At: now}, &lt.r.stats.Decisions)
	default:
		lt.runEffect(t)
	}
}

// runEffect claims the next attempt of the task's step, runs its handler
// and commits the result.
func (lt *leaderTerm) runEffect(t *fsm.Task) {
	r := lt.r
	step := t.RunnableStep()
	claim := fsm.StepStarted{TaskID: t.ID, Step: step, Attempt: t.Attempt + 1, Term: lt.term, Leader: r.node.ID(), At: lt.now()}
	res, ok := lt.commit(claim, &r.stats.Claims)
	if !ok {
		return
	}
	claimed := res.Task
	start := time.Now()
	out := lt.call(claimed, step)
	if lt.ctx.Err() != nil {
		if !fenceDeposed {
			r.commitLate(lt.resultCommand(claimed, out))
		}
		return // leadership lost: the next leader re-dispatches this claim
	}
	cmd := lt.resultCommand(claimed, out)
	committed, ok := lt.commit(cmd, &r.stats.Results)
	if !ok && committed == nil && !fenceDeposed {
		r.commitLate(cmd) // not committed: leadership lost meanwhile
	}
	if ok {
		took := time.Since(start)
		r.log.Info("step", "task", t.ID, "step", step, "attempt", claim.Attempt, "outcome", cmd.Outcome,
			"duration", took, "vm_node", claimed.NodeID, "error", cmd.Error)
		if f := r.cfg.OnStep; f != nil {
			f(step, cmd.Outcome, took)
		}
	}
}

// call runs the step's handler under the claim's timeout, once one of the
// Config.Calls slots is free, turning a panic into a transient failure.
func (lt *leaderTerm) call(t *fsm.Task, step fsm.Step) (out Result) {
	h := lt.r.handlers[step]
	if h == nil {
		if sp, ok := fsm.SpecOf(step); ok && sp.HandlerOptional {
			return Done(fsm.StepData{})
		}
		return Failed(Permanentf("no handler for step %s", step))
	}
	if !lt.acquireCall() {
		return Failed(Transient(lt.ctx.Err()))
	}
	defer lt.releaseCall()
	ctx, cancel := context.WithTimeout(lt.ctx, t.Policy.ClaimTimeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			lt.r.log.Error("step handler panicked", "task", t.ID, "step", step, "panic", v)
			out = Failed(Transient(fmt.Errorf("handler panic: %v", v)))
		}
	}()
	return h.Run(ctx, t, IdempotencyKey(t.ID, step))
}

// acquireCall takes one of the Config.Calls slots; false if leadership
// ended first.
func (lt *leaderTerm) acquireCall() bool {
	select {
	case lt.calls <- struct{}{}:
		return true
	case <-lt.ctx.Done():
		return false
	}
}

func (lt *leaderTerm) releaseCall() { <-lt.calls }

// resultCommand turns a handler's result into the fenced StepResult,
// applying the retry policy: the leader picks the backoff and commits it.
func (lt *leaderTerm) resultCommand(t *fsm.Task, out Result) fsm.StepResult {
	now := lt.now()
	c := fsm.StepResult{TaskID: t.ID, Step: t.RunnableStep(), Attempt: t.Attempt, Term: t.ClaimTerm,
		Data: out.Data, Leader: lt.r.node.ID(), At: now}
	switch {
	case out.Err == nil && out.PollAfter > 0:
		c.Outcome, c.RetryAt = fsm.OutcomePoll, now.Add(out.PollAfter)
	case out.Err == nil:
		c.Outcome = fsm.OutcomeSuccess
	default:
		c.Class, c.Error = Classify(out.Err), out.Err.Error()
		switch {
		case c.Class == fsm.ClassPermanent:
			c.Outcome = fsm.OutcomeFail
		case t.Retries < lt.r.cfg.MaxRetries:
			c.Outcome, c.RetryAt = fsm.OutcomeRetry, now.Add(lt.r.cfg.backoff(t.Retries))
		default:
			c.Outcome = fsm.OutcomeFail
			c.Error = fmt.Sprintf("gave up after %d retries: %s", t.Retries, c.Error)
		}
	}
	return c
}

// commit applies a command and counts it. ok is false if it did not take
// effect: fenced (the task moved on) or not committed (leadership lost —
// the next leader takes over from the FSM's state).
func (lt *leaderTerm) commit(cmd fsm.Command, counter *atomic.Uint64) (*fsm.Result, bool) {
	res, err := lt.r.node.Apply(lt.ctx, cmd)
	switch {
	case err != nil:
		if lt.ctx.Err() == nil {
			lt.r.log.Warn("commit failed", "command", fmt.Sprintf("%T", cmd), "error", err)
		}
		return nil, false
	case errors.Is(res.Err, fsm.ErrFenced):
		lt.r.stats.Fenced.Add(1)
		lt.r.log.Debug("command fenced", "command", fmt.Sprintf("%T", cmd), "error", res.Err)
		return res, false
	case res.Err != nil:
		lt.r.log.Warn("command refused", "command", fmt.Sprintf("%T", cmd), "error", res.Err)
		return res, false
	}
	counter.Add(1)
	return res, true
}

// processNode fires a node's alarm: an expired warm or lifetime timer
// starts destroying the node (a busy one at its max lifetime is cordoned
// instead, see fsm/cordon.go); while destroying, each alarm is one attempt
// to delete its server (idempotent: not found is success).
func (lt *leaderTerm) processNode(id string) {
	n, ok := lt.r.fsm.Node(id)
	if !ok || n.Alarm == nil {
		return
	}
	now := lt.now()
	if n.Alarm.Due.After(now) {
		return
	}
	if n.Status != fsm.NodeDestroying {
		lt.commit(fsm.NodeDeadline{NodeID: id, Due: n.Alarm.Due, At: now}, &lt.r.stats.NodeAlarms)
		return
	}
	var err error
	if lt.r.cfg.DestroyNode != nil && lt.acquireCall() {
		ctx, cancel := context.WithTimeout(lt.ctx, time.Minute)
		err = lt.r.cfg.DestroyNode(ctx, n)
		cancel()
		lt.releaseCall()
	}
	if lt.ctx.Err() != nil {
		return
	}
	res := fsm.NodeDestroyResult{NodeID: id, Deleted: err == nil, At: lt.now()}
	if err != nil {
		res.Error, res.RetryAt = err.Error(), res.At.Add(lt.r.cfg.backoff(min(n.DestroyAttempts, 4)))
	}
	lt.commit(res, &lt.r.stats.NodeAlarms)
}
