package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Node selection and the node lifecycle (REFERENCE.md "node_selection" and
// "Nodes"), driven with encoded commands. Nodes are built the way the
// cluster builds them: a host task provisions each one, NodeReady and
// NodeHeartbeat give it readiness and load, and a host task's cleanup
// releases it to the warm pool.

// nsHost is a node to build. The zero value is a ready, active small node
// in fsn1 of user u1 with no heartbeat yet.
type nsHost struct {
	user, size, loc string
	notReady        bool
	// hb sends a heartbeat hbAge before the decision time, reporting
	// active workspaces and metrics (nil: none).
	hb      bool
	hbAge   time.Duration
	active  int
	metrics *NodeMetrics
	// warm releases the node to the warm pool (its host task is cancelled
	// and cleaned up); destroy then fires its warm alarm.
	warm, destroy bool
}

func (h nsHost) spec() TaskSpec {
	s := spec(h.user)
	if s.UserID == "" {
		s.UserID = "u1"
	}
	s.VMSize, s.VMLocation = h.size, h.loc
	if s.VMSize == "" {
		s.VMSize = "small"
	}
	if s.VMLocation == "" {
		s.VMLocation = "fsn1"
	}
	return s
}

func metrics(cpu, mem float64) *NodeMetrics { return &NodeMetrics{CPULoad: cpu, MemoryPercent: mem} }

// nsBuild builds hosts[i] as node n-h<i> (host task t-h<i>), created at t0,
// with heartbeats relative to decideAt.
func nsBuild(t *testing.T, a *applier, hosts []nsHost, decideAt time.Time) []string {
	t.Helper()
	ids := make([]string, len(hosts))
	// Every node is provisioned while none is ready, so none is reused.
	for i, h := range hosts {
		task := fmt.Sprintf("t-h%d", i)
		if r := a.apply(SubmitTask{TaskID: task, Spec: h.spec(), At: t0}); r.Err != nil {
			t.Fatalf("submit %s: %v", task, r.Err)
		}
		r := a.apply(DecideStep{TaskID: task, Step: StepNodeSelection, Leader: "n1", At: t0})
		if r.Err != nil || r.Task.Step != StepNodeProvisioning {
			t.Fatalf("host %s: err=%v step=%s, want node_provisioning", task, r.Err, r.Task.Step)
		}
		ids[i] = r.Task.NodeID
	}
	for i, h := range hosts {
		if !h.notReady {
			if r := a.apply(NodeReady{NodeID: ids[i], At: t0}); r.Err != nil {
				t.Fatalf("ready %s: %v", ids[i], r.Err)
			}
		}
		if h.warm {
			task := fmt.Sprintf("t-h%d", i)
			a.apply(CancelTask{TaskID: task, Actor: Actor{Type: ActorUser}, At: t0})
			succeed(t, a, claim(t, a, task, 1, t0), StepData{}, t0)
			if n, _ := a.f.Node(ids[i]); n.Status != NodeWarm {
				t.Fatalf("host %s: node status %s after cleanup, want warm", ids[i], n.Status)
			}
			if h.destroy {
				n, _ := a.f.Node(ids[i])
				if r := a.apply(NodeAlarmFired{NodeID: n.ID, Due: n.Alarm.Due, At: n.Alarm.Due}); r.Err != nil {
					t.Fatalf("destroy %s: %v", n.ID, r.Err)
				}
			}
		}
		if h.hb {
			if r := a.apply(NodeHeartbeat{NodeID: ids[i], ActiveWorkspaces: h.active, Metrics: h.metrics, At: decideAt.Add(-h.hbAge)}); r.Err != nil {
				t.Fatalf("heartbeat %s: %v", ids[i], r.Err)
			}
		}
	}
	return ids
}

// nsDecide runs node selection for a task and returns it with the reason
// its node_selection attempt recorded (its note, or its error).
func nsDecide(t *testing.T, a *applier, id string, at time.Time) (*Task, string) {
	t.Helper()
	r := a.apply(DecideStep{TaskID: id, Step: StepNodeSelection, Leader: "n1", At: at})
	if r.Err != nil {
		t.Fatalf("decide %s: %v", id, r.Err)
	}
	last := r.Task.Steps[len(r.Task.Steps)-1]
	if last.Step != StepNodeSelection {
		t.Fatalf("last attempt is %s, want node_selection", last.Step)
	}
	if last.Note != "" {
		return r.Task, last.Note
	}
	return r.Task, last.Error
}

func nsSubmit(t *testing.T, a *applier, id string, s TaskSpec, at time.Time) {
	t.Helper()
	if r := a.apply(SubmitTask{TaskID: id, Spec: s, At: at}); r.Err != nil {
		t.Fatalf("submit %s: %v", id, r.Err)
	}
}

func nsSpec(user, size, loc, preferred string) TaskSpec {
	s := spec(user)
	s.VMSize, s.VMLocation, s.PreferredNodeID = size, loc, preferred
	return s
}

// selCase is one node selection: the fleet, the task, and the node it
// must get ("" = a new node is provisioned) with the reason recorded.
type selCase struct {
	name     string
	hosts    []nsHost
	task     TaskSpec
	want     string
	wantWhy  string
	checkSel func(t *testing.T, a *applier, task *Task)
}

func runSelCases(t *testing.T, cases []selCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newApplier(t)
			decideAt := t0.Add(time.Hour)
			nsBuild(t, a, c.hosts, decideAt)
			nsSubmit(t, a, "t-x", c.task, decideAt)
			task, why := nsDecide(t, a, "t-x", decideAt)
			want, wantStep := c.want, StepNodeAgentReady
			if want == "" {
				want, wantStep = "n-x", StepNodeProvisioning
				if why != "provisioning new node n-x" {
					t.Errorf("reason = %q, want provisioning new node n-x", why)
				}
			} else if why != c.wantWhy+": "+want {
				t.Errorf("reason = %q, want %q", why, c.wantWhy+": "+want)
			}
			if task.NodeID != want || task.Step != wantStep || task.Status != StatusQueued {
				t.Fatalf("task got node %q at %s/%s, want %q at %s", task.NodeID, task.Status, task.Step, want, wantStep)
			}
			if n, ok := a.f.Node(want); !ok || n.Status != NodeActive {
				t.Fatalf("selected node %s = %+v, want active", want, n)
			}
			if c.checkSel != nil {
				c.checkSel(t, a, task)
			}
		})
	}
}

const (
	whyPreferred = "preferred node"
	whyWarm      = "warm node claimed"
	whyRunning   = "running node with capacity"
)

func TestSelectPreferredNode(t *testing.T) {
	// n-h0 is the better running node by load; n-h1 the one preferred.
	two := func(h1 nsHost) []nsHost {
		return []nsHost{{hb: true, metrics: metrics(1, 1)}, h1}
	}
	runSelCases(t, []selCase{
		{name: "preferred node used over a better one", hosts: two(nsHost{hb: true, metrics: metrics(70, 70)}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h1", wantWhy: whyPreferred},
		{name: "preferred node used even past the capacity rules", hosts: two(nsHost{hb: true, active: 10, metrics: metrics(95, 95)}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h1", wantWhy: whyPreferred},
		{name: "preferred node of another size and location used", hosts: two(nsHost{size: "large", loc: "hel1"}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h1", wantWhy: whyPreferred},
		{name: "preferred warm node used and claimed", hosts: two(nsHost{warm: true}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h1", wantWhy: whyPreferred,
			checkSel: func(t *testing.T, a *applier, _ *Task) {
				n, _ := a.f.Node("n-h1")
				if n.WarmSince != nil || n.Alarm == nil || !n.Alarm.Due.Equal(t0.Add(DefaultSettings().MaxNodeLifetime)) {
					t.Fatalf("claimed preferred node: warm since %v, alarm %+v; want lifetime alarm only", n.WarmSince, n.Alarm)
				}
			}},
		{name: "preferred node of another user ignored", hosts: two(nsHost{user: "u2"}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h0", wantWhy: whyRunning},
		{name: "preferred node not ready ignored", hosts: two(nsHost{notReady: true}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h0", wantWhy: whyRunning},
		{name: "preferred node being destroyed ignored", hosts: two(nsHost{warm: true, destroy: true}),
			task: nsSpec("u1", "small", "fsn1", "n-h1"), want: "n-h0", wantWhy: whyRunning},
		{name: "preferred node that does not exist ignored", hosts: two(nsHost{}),
			task: nsSpec("u1", "small", "fsn1", "n-nope"), want: "n-h0", wantWhy: whyRunning},
		{name: "ignored preferred node and nothing else: provision",
			hosts: []nsHost{{user: "u2"}}, task: nsSpec("u1", "small", "fsn1", "n-h0")},
	})
}

func TestWarmClaimPreference(t *testing.T) {
	w := func(size, loc string) nsHost { return nsHost{size: size, loc: loc, warm: true} }
	checkClaimed := func(t *testing.T, a *applier, task *Task) {
		n, _ := a.f.Node(task.NodeID)
		if n.WarmSince != nil || n.Alarm == nil || n.Alarm.Kind != AlarmDeadline || !n.Alarm.Due.Equal(n.CreatedAt.Add(DefaultSettings().MaxNodeLifetime)) {
			t.Fatalf("claimed node: warm since %v, alarm %+v; want no warm timer, the lifetime alarm", n.WarmSince, n.Alarm)
		}
	}
	runSelCases(t, []selCase{
		{name: "same size beats same location", hosts: []nsHost{w("medium", "fsn1"), w("small", "nbg1")},
			task: nsSpec("u1", "small", "fsn1", ""), want: "n-h1", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "same size and location beats same size alone", hosts: []nsHost{w("small", "nbg1"), w("small", "fsn1")},
			task: nsSpec("u1", "small", "fsn1", ""), want: "n-h1", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "same location when no size matches", hosts: []nsHost{w("medium", "nbg1"), w("large", "fsn1")},
			task: nsSpec("u1", "small", "fsn1", ""), want: "n-h1", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "any warm node when nothing matches (lowest id)", hosts: []nsHost{w("medium", "nbg1"), w("large", "hel1")},
			task: nsSpec("u1", "small", "fsn1", ""), want: "n-h0", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "warm node before a better running node", hosts: []nsHost{{hb: true, metrics: metrics(1, 1)}, w("large", "hel1")},
			task: nsSpec("u1", "small", "fsn1", ""), want: "n-h1", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "default size and location when the task names none", hosts: []nsHost{w("medium", "nbg1"), w("small", "fsn1"), w("large", "fsn1")},
			task: nsSpec("u1", "", "", ""), want: "n-h1", wantWhy: whyWarm, checkSel: checkClaimed},
		{name: "another user's warm node is not claimed", hosts: []nsHost{{user: "u2", warm: true}},
			task: nsSpec("u1", "small", "fsn1", "")},
		{name: "a destroying node is not claimed", hosts: []nsHost{{warm: true, destroy: true}},
			task: nsSpec("u1", "small", "fsn1", "")},
	})
}

// TestWarmClaimIsAtomic: claiming is warm → active in the deciding commit,
// so of two tasks deciding in a row only the first claims the node.
func TestWarmClaimIsAtomic(t *testing.T) {
	for _, c := range []struct {
		name string
		host nsHost
		// the second task's outcome
		want, wantWhy string
	}{
		// A fresh node: the second task may share it as a running node.
		{"second task shares the node as a running node", nsHost{warm: true, hb: true, metrics: metrics(1, 1)}, "n-h0", whyRunning},
		// Its heartbeats stopped: warm, it was claimable; active, it is
		// unhealthy, so the second task gets a new node.
		{"second task provisions", nsHost{warm: true, hb: true, hbAge: time.Hour}, "n-y", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newApplier(t)
			at := t0.Add(time.Hour)
			nsBuild(t, a, []nsHost{c.host}, at)
			claims := 0
			prev := map[string]NodeStatus{"n-h0": NodeWarm}
			stop := a.f.Watch(nil, nil, func(ch Change) {
				if ch.Node != nil {
					if prev[ch.Node.ID] == NodeWarm && ch.Node.Status == NodeActive {
						claims++
					}
					prev[ch.Node.ID] = ch.Node.Status
				}
			})
			defer stop()
			nsSubmit(t, a, "t-x", nsSpec("u1", "small", "fsn1", ""), at)
			nsSubmit(t, a, "t-y", nsSpec("u1", "small", "fsn1", ""), at)
			first, why1 := nsDecide(t, a, "t-x", at)
			second, why2 := nsDecide(t, a, "t-y", at)
			if first.NodeID != "n-h0" || why1 != whyWarm+": n-h0" {
				t.Fatalf("first task: node %q (%s), want the warm node claimed", first.NodeID, why1)
			}
			if strings.HasPrefix(why2, whyWarm) {
				t.Fatalf("second task also claimed a warm node: %s", why2)
			}
			if second.NodeID != c.want {
				t.Fatalf("second task: node %q (%s), want %q", second.NodeID, why2, c.want)
			}
			if c.wantWhy != "" && why2 != c.wantWhy+": "+c.want {
				t.Fatalf("second task reason %q, want %q", why2, c.wantWhy)
			}
			if claims != 1 {
				t.Fatalf("warm → active transitions on the change feed = %d, want 1", claims)
			}
		})
	}
}

func TestRunningNodeCapacity(t *testing.T) {
	stale := DefaultSettings().HeartbeatStale
	h := func(mod func(*nsHost)) nsHost {
		x := nsHost{hb: true, metrics: metrics(10, 10)}
		if mod != nil {
			mod(&x)
		}
		return x
	}
	task := nsSpec("u1", "small", "fsn1", "")
	runSelCases(t, []selCase{
		{name: "healthy node with room is used", hosts: []nsHost{h(nil)}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "stale heartbeat (2×HeartbeatStale old) still allowed", hosts: []nsHost{h(func(x *nsHost) { x.hbAge = 2 * stale })},
			task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "unhealthy node (heartbeat older than 2×HeartbeatStale) excluded", hosts: []nsHost{h(func(x *nsHost) { x.hbAge = 2*stale + time.Second })},
			task: task},
		{name: "unhealthy node excluded, healthy one elsewhere used",
			hosts: []nsHost{h(func(x *nsHost) { x.hbAge = time.Hour }), h(func(x *nsHost) { x.loc = "nbg1" })},
			task:  task, want: "n-h1", wantWhy: whyRunning},
		{name: "node without heartbeat yet allowed", hosts: []nsHost{{}}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "10 active workspaces excluded", hosts: []nsHost{h(func(x *nsHost) { x.active = 10 })}, task: task},
		{name: "9 active workspaces allowed", hosts: []nsHost{h(func(x *nsHost) { x.active = 9 })}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "cpu at 80 excluded", hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(80, 10) })}, task: task},
		{name: "cpu below 80 allowed", hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(79.9, 10) })}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "memory at 80 excluded", hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(10, 80) })}, task: task},
		{name: "memory below 80 allowed", hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(10, 79.9) })}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "node without metrics allowed", hosts: []nsHost{h(func(x *nsHost) { x.metrics = nil })}, task: task, want: "n-h0", wantWhy: whyRunning},
		{name: "node without metrics ranked after a loaded one",
			hosts: []nsHost{h(func(x *nsHost) { x.metrics = nil }), {}, h(func(x *nsHost) { x.metrics = metrics(70, 70) })},
			task:  task, want: "n-h2", wantWhy: whyRunning},
		{name: "location match beats size match",
			hosts: []nsHost{h(func(x *nsHost) { x.loc = "nbg1" }), h(func(x *nsHost) { x.size = "medium" })},
			task:  task, want: "n-h1", wantWhy: whyRunning},
		{name: "size match beats load",
			hosts: []nsHost{h(func(x *nsHost) { x.size = "medium"; x.metrics = metrics(0, 0) }), h(func(x *nsHost) { x.metrics = metrics(70, 70) })},
			task:  task, want: "n-h1", wantWhy: whyRunning},
		// 0.4·0 + 0.6·50 = 30 against 0.4·70 + 0.6·0 = 28: only the
		// reference's weights pick n-h1.
		{name: "load is 0.4·cpu + 0.6·memory",
			hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(0, 50) }), h(func(x *nsHost) { x.metrics = metrics(70, 0) })},
			task:  task, want: "n-h1", wantWhy: whyRunning},
		{name: "least loaded of several, over-threshold one skipped",
			hosts: []nsHost{h(func(x *nsHost) { x.metrics = metrics(85, 1) }), h(func(x *nsHost) { x.metrics = metrics(20, 20) }), h(func(x *nsHost) { x.metrics = metrics(10, 10) })},
			task:  task, want: "n-h2", wantWhy: whyRunning},
		{name: "another user's node is not used", hosts: []nsHost{h(func(x *nsHost) { x.user = "u2" })}, task: task},
		{name: "a node not ready is not used", hosts: []nsHost{{notReady: true}}, task: task},
		{name: "a destroying node is not used", hosts: []nsHost{{warm: true, destroy: true}}, task: task},
	})
}

// TestLiveWorkspacesFillANode: the workspaces the state knows of count
// against MaxWorkspacesPerNode even before a heartbeat reports them.
func TestLiveWorkspacesFillANode(t *testing.T) {
	a := newApplier(t)
	nsBuild(t, a, []nsHost{{hb: true, metrics: metrics(1, 1)}}, t0)
	for i := 0; i < DefaultSettings().MaxWorkspacesPerNode; i++ {
		id := fmt.Sprintf("t-w%d", i)
		nsSubmit(t, a, id, nsSpec("u1", "small", "fsn1", ""), t0)
		task, why := nsDecide(t, a, id, t0)
		if task.NodeID != "n-h0" {
			t.Fatalf("task %d: node %q (%s), want n-h0", i, task.NodeID, why)
		}
		// agent_ready done: the workspace record is created.
		task = succeed(t, a, claim(t, a, id, 1, t0), StepData{}, t0)
		if task.Step != StepWorkspaceCreate || task.WorkspaceID == "" {
			t.Fatalf("task %d at %s, workspace %q", i, task.Step, task.WorkspaceID)
		}
	}
	nsSubmit(t, a, "t-x", nsSpec("u1", "small", "fsn1", ""), t0)
	if task, why := nsDecide(t, a, "t-x", t0); task.NodeID != "n-x" || task.Step != StepNodeProvisioning {
		t.Fatalf("11th task: node %q (%s), want a new node", task.NodeID, why)
	}
}

func TestProvisionWhenNothingFits(t *testing.T) {
	a := newApplier(t)
	at := t0.Add(time.Minute)
	nsSubmit(t, a, "t-abc", nsSpec("u1", "large", "hel1", ""), at)
	task, why := nsDecide(t, a, "t-abc", at)
	if task.Step != StepNodeProvisioning || task.NodeID != "n-abc" || why != "provisioning new node n-abc" {
		t.Fatalf("task at %s on %q (%s)", task.Step, task.NodeID, why)
	}
	if task.Alarm == nil || task.Alarm.Kind != AlarmRun || !task.Alarm.Due.Equal(at) ||
		task.StepDeadline == nil || !task.StepDeadline.Equal(at.Add(DefaultPolicy().ProvisionTimeout)) {
		t.Fatalf("provisioning alarm %+v deadline %v", task.Alarm, task.StepDeadline)
	}
	n, ok := a.f.Node("n-abc")
	switch {
	case !ok:
		t.Fatal("no node record before provisioning")
	case n.UserID != "u1" || n.Status != NodeActive || n.Size != "large" || n.Location != "hel1":
		t.Fatalf("node = %+v", n)
	case n.ServerName != "node-n-abc" || !n.AutoProvisioned || n.TaskID != "t-abc" || n.Ready || n.ServerID != 0:
		t.Fatalf("node = %+v", n)
	case n.Alarm == nil || n.Alarm.Kind != AlarmDeadline || !n.Alarm.Due.Equal(at.Add(DefaultSettings().MaxNodeLifetime)):
		t.Fatalf("node alarm = %+v, want the max-lifetime deadline", n.Alarm)
	}
	// Defaults when the task names no VM shape.
	nsSubmit(t, a, "t-def", spec("u2"), at)
	task, _ = nsDecide(t, a, "t-def", at)
	n, _ = a.f.Node(task.NodeID)
	if task.VMSize != DefaultVMSize || task.VMLocation != DefaultVMLocation || n.Size != DefaultVMSize || n.Location != DefaultVMLocation {
		t.Fatalf("defaults: task %s/%s node %s/%s", task.VMSize, task.VMLocation, n.Size, n.Location)
	}
}

func TestNodeLimitPerUser(t *testing.T) {
	a := newApplier(t)
	limit := DefaultSettings().MaxNodesPerUser
	hosts := make([]nsHost, limit)
	for i := range hosts {
		hosts[i] = nsHost{notReady: true} // none usable, all live
	}
	ids := nsBuild(t, a, hosts, t0)
	nsSubmit(t, a, "t-x", nsSpec("u1", "small", "fsn1", ""), t0)
	task, why := nsDecide(t, a, "t-x", t0)
	if task.Status != StatusFailed || task.Step != StepNone || !task.Cleanup || why != "LIMIT_EXCEEDED" {
		t.Fatalf("task = %s/%s cleanup=%v reason %q", task.Status, task.Step, task.Cleanup, why)
	}
	if last := task.Steps[len(task.Steps)-1]; last.Outcome != string(OutcomeFail) {
		t.Fatalf("attempt outcome %q, want fail", last.Outcome)
	}
	if !strings.Contains(task.ErrorMessage, "LIMIT_EXCEEDED") {
		t.Fatalf("error message %q", task.ErrorMessage)
	}
	if _, ok := a.f.Node("n-x"); ok || task.NodeID != "" {
		t.Fatalf("a node was created past the limit (task node %q)", task.NodeID)
	}
	errs, _ := a.f.Errors(ErrorFilter{TaskID: "t-x", Kind: ErrKindFailed})
	if len(errs) != 1 || errs[0].Class != ClassPermanent || errs[0].Step != StepNodeSelection || !strings.Contains(errs[0].Message, "LIMIT_EXCEEDED") {
		t.Fatalf("error records = %+v, want one permanent LIMIT_EXCEEDED", errs)
	}
	// Another user is not limited by u1's nodes.
	nsSubmit(t, a, "t-u2", nsSpec("u2", "small", "fsn1", ""), t0)
	if task, _ := nsDecide(t, a, "t-u2", t0); task.Step != StepNodeProvisioning {
		t.Fatalf("u2's task at %s/%s, want provisioning", task.Status, task.Step)
	}
	// A node being destroyed no longer counts.
	n, _ := a.f.Node(ids[0])
	if r := a.apply(NodeAlarmFired{NodeID: n.ID, Due: n.Alarm.Due, At: n.Alarm.Due}); r.Err != nil || r.Node.Status != NodeDestroying {
		t.Fatalf("lifetime alarm: %v", r.Err)
	}
	nsSubmit(t, a, "t-y", nsSpec("u1", "small", "fsn1", ""), t0)
	if task, why := nsDecide(t, a, "t-y", n.Alarm.Due); task.Step != StepNodeProvisioning || task.NodeID != "n-y" {
		t.Fatalf("after one node went: %s/%s (%s), want provisioning n-y", task.Status, task.Step, why)
	}
}

// TestDerivedNodeIDs: node ids come from the task id, and a re-run that
// provisions again gets a fresh one, never an id of the state.
func TestDerivedNodeIDs(t *testing.T) {
	for task, want := range map[string]string{"t-abc": "n-abc", "t1": "n-t1", "job7": "n-job7"} {
		a := newApplier(t)
		nsSubmit(t, a, task, spec("u1"), t0)
		if got, _ := nsDecide(t, a, task, t0); got.NodeID != want {
			t.Errorf("task %s: node %q, want %q", task, got.NodeID, want)
		}
		if n, _ := a.f.Node(want); n == nil || n.ServerName != "node-"+want {
			t.Errorf("task %s: server name of %s = %+v", task, want, n)
		}
	}

	a := newApplier(t)
	nsSubmit(t, a, "t-abc", spec("u1"), t0)
	at := t0
	for run, want := range []string{"n-abc", "n-abc-2", "n-abc-3"} {
		if run > 0 {
			for _, to := range []Status{StatusReady, StatusQueued} {
				if r := a.apply(SetStatus{TaskID: "t-abc", To: to, Actor: Actor{Type: ActorUser}, At: at}); r.Err != nil {
					t.Fatalf("run %d: → %s: %v", run, to, r.Err)
				}
			}
		}
		task, _ := nsDecide(t, a, "t-abc", at)
		if task.NodeID != want || task.Step != StepNodeProvisioning {
			t.Fatalf("run %d: node %q at %s, want a new node %q", run, task.NodeID, task.Step, want)
		}
		if n, _ := a.f.Node(want); n.ServerName != "node-"+want {
			t.Fatalf("run %d: server name %q", run, n.ServerName)
		}
		// The run ends before the node was ready: it is destroyed and
		// deleted, but its record (and id) stays.
		a.apply(CancelTask{TaskID: "t-abc", Actor: Actor{Type: ActorUser}, At: at})
		succeed(t, a, claim(t, a, "t-abc", 1, at), StepData{}, at)
		if n, _ := a.f.Node(want); n.Status != NodeDestroying {
			t.Fatalf("run %d: node %s is %s after cleanup, want destroying", run, want, n.Status)
		}
		if r := a.apply(NodeDestroyResult{NodeID: want, Deleted: true, At: at}); r.Err != nil || r.Node.Status != NodeDeleted {
			t.Fatalf("run %d: destroy result: %v", run, r.Err)
		}
		at = at.Add(time.Minute)
	}
}

// TestRerunGetsFreshWorkspace: a re-run creates its own workspace (and
// session); the previous run's stopped workspace cannot be created again on
// the VM (409 workspace_not_creatable) nor become ready.
func TestRerunGetsFreshWorkspace(t *testing.T) {
	a := newApplier(t)
	nsSubmit(t, a, "t-rw", spec("u1"), t0)
	nsDecide(t, a, "t-rw", t0)
	succeed(t, a, claim(t, a, "t-rw", 1, t0), StepData{ServerID: 1, IPv4: "10.0.0.1"}, t0)
	a.apply(NodeReady{NodeID: "n-rw", At: t0})
	succeed(t, a, claim(t, a, "t-rw", 1, t0), StepData{}, t0) // agent ready
	succeed(t, a, claim(t, a, "t-rw", 1, t0), StepData{}, t0) // workspace created
	a.apply(WorkspaceReady{WorkspaceID: "ws-rw", Status: WorkspaceRunning, At: t0})
	first := succeed(t, a, claim(t, a, "t-rw", 1, t0), StepData{SessionID: "s-rw"}, t0)
	if first.Step != StepRunning || first.WorkspaceID != "ws-rw" || first.AgentSessionID != "s-rw" {
		t.Fatalf("first run at %s, workspace %q session %q", first.Step, first.WorkspaceID, first.AgentSessionID)
	}
	a.apply(CancelTask{TaskID: "t-rw", Actor: Actor{Type: ActorUser}, At: t0})
	succeed(t, a, claim(t, a, "t-rw", 1, t0), StepData{WorkspaceStopped: true}, t0)
	if ws, _ := a.f.Workspace("ws-rw"); ws.Status != WorkspaceStopped {
		t.Fatalf("old workspace %s after cleanup", ws.Status)
	}

	at := t0.Add(time.Minute)
	for _, to := range []Status{StatusReady, StatusQueued} {
		a.apply(SetStatus{TaskID: "t-rw", To: to, Actor: Actor{Type: ActorUser}, At: at})
	}
	task, why := nsDecide(t, a, "t-rw", at)
	if task.NodeID != "n-rw" || why != whyWarm+": n-rw" {
		t.Fatalf("re-run: node %q (%s), want the warm n-rw", task.NodeID, why)
	}
	task = succeed(t, a, claim(t, a, "t-rw", 1, at), StepData{}, at)
	if task.Step != StepWorkspaceCreate || task.WorkspaceID == "ws-rw" || task.WorkspaceID == "" {
		t.Fatalf("re-run at %s reuses workspace %q", task.Step, task.WorkspaceID)
	}
	if ws, ok := a.f.Workspace(task.WorkspaceID); !ok || ws.Status != WorkspaceCreating || ws.NodeID != "n-rw" || ws.TaskID != "t-rw" {
		t.Fatalf("re-run workspace %+v", ws)
	}
	if task.AgentSessionID != "" {
		t.Fatalf("re-run keeps the old session id %q", task.AgentSessionID)
	}
}

func TestReleaseNodeLifecycle(t *testing.T) {
	s := DefaultSettings()
	// cleanup runs the host task t-h0's cleanup at an offset from t0 and
	// returns the node after it.
	cleanup := func(t *testing.T, a *applier, task string, at time.Time) *Node {
		t.Helper()
		a.apply(CancelTask{TaskID: task, Actor: Actor{Type: ActorUser}, At: at})
		succeed(t, a, claim(t, a, task, 1, at), StepData{}, at)
		cur, _ := a.f.Task(task)
		n, _ := a.f.Node(cur.NodeID)
		return n
	}
	t.Run("last task's cleanup: warm with the warm timeout", func(t *testing.T) {
		a := newApplier(t)
		nsBuild(t, a, []nsHost{{}}, t0)
		at := t0.Add(10 * time.Minute)
		n := cleanup(t, a, "t-h0", at)
		if n.Status != NodeWarm || n.WarmSince == nil || !n.WarmSince.Equal(at) ||
			n.Alarm == nil || n.Alarm.Kind != AlarmDeadline || !n.Alarm.Due.Equal(at.Add(s.NodeWarmTimeout)) {
			t.Fatalf("node %s warm since %v alarm %+v, want warm until %s", n.Status, n.WarmSince, n.Alarm, at.Add(s.NodeWarmTimeout))
		}
	})
	t.Run("warm timeout capped by the max lifetime", func(t *testing.T) {
		a := newApplier(t)
		nsBuild(t, a, []nsHost{{}}, t0)
		n := cleanup(t, a, "t-h0", t0.Add(s.MaxNodeLifetime-10*time.Minute))
		if n.Status != NodeWarm || n.Alarm == nil || !n.Alarm.Due.Equal(t0.Add(s.MaxNodeLifetime)) {
			t.Fatalf("node %s alarm %+v, want warm until the end of its lifetime %s", n.Status, n.Alarm, t0.Add(s.MaxNodeLifetime))
		}
	})
	t.Run("configured warm timeout", func(t *testing.T) {
		a := newApplier(t)
		set := s
		set.NodeWarmTimeout = 5 * time.Minute
		a.apply(SetSettings{Settings: set})
		nsBuild(t, a, []nsHost{{}}, t0)
		if n := cleanup(t, a, "t-h0", t0); n.Alarm == nil || !n.Alarm.Due.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("alarm %+v, want in 5 min", n.Alarm)
		}
	})
	t.Run("another task on the node keeps it active", func(t *testing.T) {
		a := newApplier(t)
		nsBuild(t, a, []nsHost{{}}, t0)
		nsSubmit(t, a, "t-x", spec("u1"), t0)
		if task, _ := nsDecide(t, a, "t-x", t0); task.NodeID != "n-h0" {
			t.Fatalf("t-x on %q", task.NodeID)
		}
		if n := cleanup(t, a, "t-h0", t0); n.Status != NodeActive || n.WarmSince != nil {
			t.Fatalf("node %s with t-x still on it, want active", n.Status)
		}
		if n := cleanup(t, a, "t-x", t0.Add(time.Minute)); n.Status != NodeWarm {
			t.Fatalf("node %s after the last task, want warm", n.Status)
		}
	})
	t.Run("a node that never became ready is destroyed", func(t *testing.T) {
		a := newApplier(t)
		nsBuild(t, a, []nsHost{{notReady: true}}, t0)
		at := t0.Add(3 * time.Minute)
		n := cleanup(t, a, "t-h0", at)
		if n.Status != NodeDestroying || n.WarmSince != nil || n.Alarm == nil || n.Alarm.Kind != AlarmRun || !n.Alarm.Due.Equal(at) {
			t.Fatalf("node %s alarm %+v, want destroying now", n.Status, n.Alarm)
		}
	})
}

func TestNodeAlarmFired(t *testing.T) {
	a := newApplier(t)
	nsBuild(t, a, []nsHost{{warm: true}, {}}, t0)
	warm, _ := a.f.Node("n-h0")
	due := warm.Alarm.Due

	// A stale or early fire changes nothing.
	for _, bad := range []time.Time{due.Add(-time.Second), due.Add(time.Second)} {
		r := a.apply(NodeAlarmFired{NodeID: "n-h0", Due: bad, At: bad})
		if !errors.Is(r.Err, ErrFenced) {
			t.Fatalf("fire with due %s: err = %v, want ErrFenced", bad, r.Err)
		}
		if n, _ := a.f.Node("n-h0"); n.Status != NodeWarm || !n.Alarm.Due.Equal(due) {
			t.Fatalf("a stale fire changed the node: %+v", n)
		}
	}
	at := due.Add(2 * time.Second)
	r := a.apply(NodeAlarmFired{NodeID: "n-h0", Due: due, At: at})
	if r.Err != nil || r.Node.Status != NodeDestroying || r.Node.WarmSince != nil ||
		r.Node.Alarm == nil || r.Node.Alarm.Kind != AlarmRun || !r.Node.Alarm.Due.Equal(at) {
		t.Fatalf("warm alarm fired: err=%v node=%+v, want destroying with a run alarm now", r.Err, r.Node)
	}
	// Firing it again is stale: the node's alarm is now the delete attempt.
	if r := a.apply(NodeAlarmFired{NodeID: "n-h0", Due: due, At: at}); !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("second fire: err = %v, want ErrFenced", r.Err)
	}
	// NodeAlarmFired, as older logs hold it, destroys an active node at the
	// end of its lifetime whatever runs on it; NodeDeadline, which the
	// leader commits now, cordons it (cordon_test.go).
	active, _ := a.f.Node("n-h1")
	if r := a.apply(NodeAlarmFired{NodeID: "n-h1", Due: active.Alarm.Due, At: active.Alarm.Due}); r.Err != nil || r.Node.Status != NodeDestroying {
		t.Fatalf("lifetime alarm of an active node: err=%v node=%+v", r.Err, r.Node)
	}
	if r := a.apply(NodeAlarmFired{NodeID: "n-nope", Due: due, At: at}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown node: err = %v, want ErrNotFound", r.Err)
	}
}

func TestNodeDestroyResult(t *testing.T) {
	a := newApplier(t)
	nsBuild(t, a, []nsHost{{warm: true, destroy: true}, {}}, t0)
	at := t0.Add(time.Hour)
	retry := at.Add(10 * time.Second)
	r := a.apply(NodeDestroyResult{NodeID: "n-h0", Error: "503 unavailable", RetryAt: retry, At: at})
	if r.Err != nil || r.Node.Status != NodeDestroying || r.Node.DestroyAttempts != 1 || r.Node.LastError != "503 unavailable" ||
		r.Node.Alarm == nil || r.Node.Alarm.Kind != AlarmRun || !r.Node.Alarm.Due.Equal(retry) {
		t.Fatalf("failed delete: err=%v node=%+v, want a retry at %s", r.Err, r.Node, retry)
	}
	if errs, _ := a.f.Errors(ErrorFilter{NodeID: "n-h0", Kind: ErrKindNode}); len(errs) != 1 || !strings.Contains(errs[0].Message, "503 unavailable") {
		t.Fatalf("error records = %+v, want the failed delete", errs)
	}
	r = a.apply(NodeDestroyResult{NodeID: "n-h0", Deleted: true, At: retry})
	if r.Err != nil || r.Node.Status != NodeDeleted || r.Node.Alarm != nil || r.Node.DeletedAt == nil || !r.Node.DeletedAt.Equal(retry) ||
		r.Node.DestroyAttempts != 2 || r.Node.LastError != "" {
		t.Fatalf("deleted: err=%v node=%+v", r.Err, r.Node)
	}
	// Late or misdirected results change nothing.
	for _, id := range []string{"n-h0", "n-h1"} {
		before, _ := a.f.Node(id)
		r := a.apply(NodeDestroyResult{NodeID: id, Error: "late", RetryAt: retry, At: retry})
		after, _ := a.f.Node(id)
		if r.Err != nil || !r.Unchanged || after != before {
			t.Fatalf("result for %s node %s: err=%v duplicate=%v changed=%v", before.Status, id, r.Err, r.Unchanged, after != before)
		}
	}
	if r := a.apply(NodeDestroyResult{NodeID: "n-nope", Deleted: true, At: retry}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown node: err = %v", r.Err)
	}
}
