package fsm

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
)

// DefaultIdempotencyRetention is how long, in committed time, a request id
// is remembered. Every replica must use the same value.
const DefaultIdempotencyRetention = 24 * time.Hour

// btreeDegree suits in-memory trees of pointers.
const btreeDegree = 32

// Result is what Apply returns for every command (raft hands it to the
// proposer through ApplyFuture.Response).
type Result struct {
	Index uint64
	// Task is the task the command created or changed, if any.
	Task *Task
	// Node is the node the command changed, if any.
	Node *Node
	// Unchanged: the command was valid but changed nothing (a retry, or
	// the state already said so), so it feeds no change.
	Unchanged bool
	// Replayed: the command's request id was seen before, and the first
	// result is returned instead of applying again (Unchanged too).
	Replayed bool
	// Err is a domain error (ErrNotFound, ErrInvalidTransition, …): the
	// command committed but changed nothing.
	Err error
	// Batch holds one result per member of a Batch command, in order.
	Batch []*Result
	// Persisted and Duplicates count a RecordMessages command's messages
	// kept and already seen.
	Persisted, Duplicates int
}

// Change is one entry of the change feed: a task or node whose state
// changed (exactly one of the two is set).
type Change struct {
	Index uint64
	Task  *Task
	Node  *Node
}

// state is everything a snapshot holds. Its trees are copy-on-write, so
// cloning it is O(1).
type state struct {
	index      uint64
	tasks      *taskTree // by id, with counts per status (taskcount.go)
	nodes      *btree.BTreeG[*Node]
	workspaces *btree.BTreeG[*Workspace]
	members    *btree.BTreeG[Member]
	idem       *btree.BTreeG[*idemEntry] // by key
	idemByTime *btree.BTreeG[*idemEntry] // by (at, key), for pruning
	errors     *btree.BTreeG[*ErrorRecord]
	errSeq     uint64
	// rejected counts step claims and results that fencing refused.
	rejected uint64
	settings Settings
	// creds are the sealed credentials (credentials.go).
	creds *btree.BTreeG[*Credential]
	// keys is replaced, never modified in place, so clones may share it.
	keys []SigningKey
	// apiTokens is replaced on every change, like keys (apitokens.go).
	apiTokens []*APIToken
	// controlURL is the cluster's control-plane URL (controlplane.go).
	controlURL string
	// clusterID is the id of the cluster this state belongs to (clusterid.go).
	clusterID string
	// nodeEvents and messages are the agents' reports kept per node and
	// per task (nodeevents.go, messages.go).
	nodeEvents *btree.BTreeG[*nodeEventLog]
	messages   *btree.BTreeG[*TaskMessages]
	// idx holds derived lookups (index.go), not part of the snapshot.
	idx indexes
}

func newState() *state {
	return &state{
		tasks:      newTaskTree(),
		nodes:      btree.NewG(btreeDegree, func(a, b *Node) bool { return a.ID < b.ID }),
		workspaces: btree.NewG(btreeDegree, func(a, b *Workspace) bool { return a.ID < b.ID }),
		members:    btree.NewG(4, func(a, b Member) bool { return a.ID < b.ID }),
		idem:       btree.NewG(btreeDegree, func(a, b *idemEntry) bool { return a.Key < b.Key }),
		idemByTime: btree.NewG(btreeDegree, lessIdemByTime),
		errors:     btree.NewG(btreeDegree, func(a, b *ErrorRecord) bool { return a.Seq < b.Seq }),
		creds:      btree.NewG(btreeDegree, lessCredential),
		settings:   DefaultSettings(),
		nodeEvents: newNodeEventTree(),
		messages:   newMessageTree(),
		idx:        newIndexes(),
	}
}

func lessIdemByTime(a, b *idemEntry) bool {
	if !a.At.Equal(b.At) {
		return a.At.Before(b.At)
	}
	return a.Key < b.Key
}

func (s *state) clone() *state {
	return &state{
		index:      s.index,
		tasks:      s.tasks.Clone(),
		nodes:      s.nodes.Clone(),
		workspaces: s.workspaces.Clone(),
		members:    s.members.Clone(),
		idem:       s.idem.Clone(),
		idemByTime: s.idemByTime.Clone(),
		errors:     s.errors.Clone(),
		creds:      s.creds.Clone(),
		errSeq:     s.errSeq,
		rejected:   s.rejected,
		settings:   s.settings,
		keys:       s.keys,
		apiTokens:  s.apiTokens,
		controlURL: s.controlURL,
		clusterID:  s.clusterID,
		nodeEvents: s.nodeEvents.Clone(),
		messages:   s.messages.Clone(),
		idx:        s.idx.clone(),
	}
}

// FSM is the replicated state machine. It implements raft.FSM; tests drive
// it directly with ApplyCommand.
type FSM struct {
	mu        sync.RWMutex
	st        *state
	retention time.Duration
	observers map[int]func(Change)
	nextObs   int
	// changed collects the records one Apply changed besides the result's
	// own, for the change feed.
	changed []Change
	// archive receives what a Forget command drops (retention.go).
	archive func(Forgotten)
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM.
func New() *FSM {
	return &FSM{st: newState(), retention: DefaultIdempotencyRetention}
}

// Watch is the change feed. Under the apply lock, so that no change falls
// between the two, it calls visitTask and visitNode for every stored task
// (as ForEachTask passes them: a finished task's timeline is not loaded)
// and node and then installs obs, which is called synchronously inside
// Apply for every changed task or node from then on. None may block or call
// back into the FSM. The returned function removes obs.
func (f *FSM) Watch(visitTask func(*Task), visitNode func(*Node), obs func(Change)) (stop func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if visitTask != nil {
		f.st.tasks.Ascend(func(t *Task) bool { visitTask(t); return true })
	}
	if visitNode != nil {
		f.st.nodes.Ascend(func(n *Node) bool { visitNode(n); return true })
	}
	if f.observers == nil {
		f.observers = map[int]func(Change){}
	}
	id := f.nextObs
	f.nextObs++
	f.observers[id] = obs
	return func() {
		f.mu.Lock()
		delete(f.observers, id)
		f.mu.Unlock()
	}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.ApplyCommand(l.Index, l.Data)
}

// ApplyCommand applies one encoded command at a log index. A command that
// cannot be decoded panics: every replica would fail the same way, and going
// on would silently diverge from the leader's intent. Only a type that
// carries IgnoreUnknown is skipped.
func (f *FSM) ApplyCommand(index uint64, data []byte) *Result {
	cmd, err := Decode(data)
	if err != nil {
		if len(data) > 0 && CommandType(data[0])&IgnoreUnknown != 0 {
			f.mu.Lock()
			f.st.index = index
			f.mu.Unlock()
			return &Result{Index: index}
		}
		panic(fmt.Sprintf("fsm: cannot apply log entry %d: %v", index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := cmd.(Batch); ok {
		res := &Result{Index: index, Batch: make([]*Result, len(b.Commands))}
		for i, c := range b.Commands {
			res.Batch[i] = f.applyLocked(index, c)
		}
		return res
	}
	return f.applyLocked(index, cmd)
}

// applyLocked applies one decoded command (not a batch) under f.mu.
func (f *FSM) applyLocked(index uint64, cmd Command) *Result {
	f.st.index = index
	f.changed = f.changed[:0]
	res := &Result{Index: index}
	switch c := cmd.(type) {
	case SubmitTask:
		f.applySubmitTask(c, res)
	case CancelTask:
		f.applySetStatus(c.TaskID, StatusCancelled, c.Actor, c.Reason, c.At, res)
	case SetStatus:
		f.applySetStatus(c.TaskID, c.To, c.Actor, c.Reason, c.At, res)
	case RegisterMember:
		f.applyRegisterMember(c, res)
	case RemoveMember:
		f.st.members.Delete(Member{ID: c.ID})
	case StepStarted:
		f.applyStepStarted(c, res)
	case StepResult:
		f.applyStepResult(c, res)
	case DecideStep:
		f.applyDecideStep(c, res)
	case StepTimeout:
		f.applyStepTimeout(c, res)
	case FailTask:
		f.applyFailTask(c, res)
	case Reschedule:
		f.applyReschedule(c, res)
	case SetSettings:
		f.st.settings = c.Settings
	case AddSigningKey:
		f.applyAddSigningKey(c, res)
	case SealSigningKeys:
		f.applySealSigningKeys(c, res)
	case SetControlPlane:
		f.applySetControlPlane(c, res)
	case ReconcileRun:
		f.applyReconcileRun(c, res)
	case SetClusterID:
		f.applySetClusterID(c, res)
	case SetCredential:
		f.applySetCredential(c, res)
	case DeleteCredential:
		f.applyDeleteCredential(c, res)
	case CreateAPIToken:
		f.applyCreateAPIToken(c, res)
	case RevokeAPIToken:
		f.applyRevokeAPIToken(c, res)
	case RecordError:
		f.recordError(c.Record)
	case PurgeErrors:
		f.applyPurgeErrors(c)
	case NodeAlarmFired:
		f.applyNodeAlarmFired(c, false, res)
	case NodeDeadline:
		f.applyNodeAlarmFired(NodeAlarmFired(c), true, res)
	case NodeAdmin:
		f.applyNodeAdmin(c, res)
	case Forget:
		f.applyForget(c, res)
	case NodeDestroyResult:
		f.applyNodeDestroyResult(c, res)
	case NodeReady:
		f.applyNodeReady(c, res)
	case NodeHeartbeat:
		f.applyNodeHeartbeat(c, res)
	case NodeErrors:
		f.applyNodeErrors(c, res)
	case WorkspaceReady:
		f.applyWorkspaceReady(c, res)
	case WorkspaceFailed:
		f.applyWorkspaceFailed(c, res)
	case TaskStatusCallback:
		f.applyTaskStatusCallback(c, res)
	case IdleReset:
		f.applyIdleReset(c, res)
	case ImportTask:
		f.applyImportTask(c, res)
	case RecordMessages:
		f.applyRecordMessages(c, res)
	default:
		panic(fmt.Sprintf("fsm: log entry %d: no apply for %T", index, cmd))
	}
	if res.Task != nil {
		// A stored task handed back as it is (a duplicate submit) may be
		// packed; every task leaving Apply is loaded.
		res.Task = res.Task.loaded()
		f.st.indexTask(res.Task)
		f.st.storeDormant(res.Task)
	}
	if res.Node != nil {
		f.st.indexNode(res.Node)
	}
	if res.Err == nil && !res.Unchanged {
		if res.Task != nil {
			f.changed = append(f.changed, Change{Task: res.Task})
		}
		if res.Node != nil {
			f.changed = append(f.changed, Change{Node: res.Node})
		}
	}
	for _, ch := range f.changed {
		ch.Index = index
		for _, obs := range f.observers {
			obs(ch)
		}
	}
	f.changed = f.changed[:0]
	return res
}

func (f *FSM) applySubmitTask(c SubmitTask, res *Result) {
	f.pruneIdempotency(c.At)
	if c.RequestID != "" {
		if e, ok := f.st.idem.Get(&idemEntry{Key: c.RequestID}); ok {
			if c.Fingerprint != "" && e.Fingerprint != "" && c.Fingerprint != e.Fingerprint {
				res.Err = fmt.Errorf("%w: %q", ErrIdempotencyMismatch, c.RequestID)
				return
			}
			res.Task, _ = f.st.tasks.Get(&Task{ID: e.TaskID})
			res.Unchanged, res.Replayed = true, true
			return
		}
	}
	if strings.TrimSpace(c.TaskID) == "" {
		res.Err = fmt.Errorf("%w: task id is empty", ErrInvalid)
		return
	}
	if _, ok := f.st.tasks.Get(&Task{ID: c.TaskID}); ok {
		res.Err = fmt.Errorf("%w: task %s", ErrExists, c.TaskID)
		return
	}
	t := &Task{
		ID:        c.TaskID,
		TaskSpec:  c.Spec,
		Owner:     c.Owner,
		Status:    StatusQueued,
		CreatedAt: c.At,
		Policy:    c.Policy,
		History: []StatusEvent{{
			To: StatusQueued, Actor: Actor{Type: ActorUser, ID: c.Spec.UserID}, Reason: "submitted", At: c.At,
		}},
	}
	if t.Policy == (Policy{}) {
		t.Policy = DefaultPolicy()
	}
	t.enterStep(StepNodeSelection, c.At)
	f.st.tasks.ReplaceOrInsert(t)
	if c.RequestID != "" {
		e := &idemEntry{Key: c.RequestID, Fingerprint: c.Fingerprint, TaskID: t.ID, At: c.At}
		f.st.idem.ReplaceOrInsert(e)
		f.st.idemByTime.ReplaceOrInsert(e)
	}
	res.Task = t
}

// pruneIdempotency forgets request ids older than the retention, measured in
// the committed time of the command being applied.
func (f *FSM) pruneIdempotency(now time.Time) {
	cutoff := now.Add(-f.retention)
	for {
		e, ok := f.st.idemByTime.Min()
		if !ok || !e.At.Before(cutoff) {
			return
		}
		f.st.idemByTime.DeleteMin()
		f.st.idem.Delete(e)
	}
}

func (f *FSM) applySetStatus(id string, to Status, actor Actor, reason string, at time.Time, res *Result) {
	cur, ok := f.st.tasks.Get(&Task{ID: id})
	if !ok {
		res.Err = fmt.Errorf("%w: task %s", ErrNotFound, id)
		return
	}
	if cur.Status == to {
		res.Task = cur
		res.Unchanged = true
		return
	}
	if !UserSettable(to) {
		res.Err = fmt.Errorf("%w: %s is entered only by the pipeline, not set directly", ErrInvalidTransition, to)
		res.Task = cur
		return
	}
	if !CanTransition(cur.Status, to) {
		res.Err = fmt.Errorf("%w: %s → %s", ErrInvalidTransition, cur.Status, to)
		res.Task = cur
		return
	}
	t := cur.clone()
	switch {
	case to.Terminal():
		// Ending a run at any step: the in-flight claim (if any) is
		// dropped, so its late result is fenced off; cleanup is scheduled.
		t.end(to, actor, reason, "", at)
	case to == StatusQueued:
		// A re-run starts the pipeline again from the first step, after
		// any cleanup still pending from the previous run.
		t.setStatus(to, actor, reason, at)
		t.CompletedAt, t.ErrorMessage = nil, ""
		if t.Cleanup {
			t.Step = StepNodeSelection
		} else {
			t.enterStep(StepNodeSelection, at)
		}
	default:
		t.setStatus(to, actor, reason, at)
	}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyRegisterMember(c RegisterMember, res *Result) {
	if c.Member.ID == "" {
		res.Err = fmt.Errorf("%w: member id is empty", ErrInvalid)
		return
	}
	f.st.members.ReplaceOrInsert(c.Member)
}

// notifyNode puts a node changed as a side effect on the change feed.
func (f *FSM) notifyNode(n *Node) {
	f.st.indexNode(n)
	f.changed = append(f.changed, Change{Node: n})
}

// Settings returns the cluster-wide settings in force.
func (f *FSM) Settings() Settings {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.settings
}
