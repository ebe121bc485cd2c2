package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// The nemesis hurts the leader, one fault at a time: a kill (SIGKILL, then
// a restart on the same data), a pause (SIGSTOP for longer than the
// election timeout, then SIGCONT: the deposed leader wakes up believing it
// leads), a partition (the leader's raft traffic cut while it has steps in
// flight, then healed), or a full disk (its data dir's filesystem filled
// to the last byte, then freed; diskfull.go). Around each it records when
// the fault happened and when a survivor first named a new leader; the new
// leader's first step is found afterwards in the task timelines
// (FirstSteps).

// NemesisConfig shapes the faults.
type NemesisConfig struct {
	Kills, Pauses, Partitions int
	// DiskFulls fill the leader's disk (the target must be a DiskFiller).
	DiskFulls int
	// Duration spreads the faults over this long (each gets an equal slot).
	Duration time.Duration
	// KillDown is how long a killed node stays down (default: random in
	// 200ms–1.5s).
	KillDown time.Duration
	// PauseHold and PartitionHold are how long a pause and a partition
	// last (default 2s and 3s: several election timeouts).
	PauseHold, PartitionHold time.Duration
	// DiskHold is how long a disk stays full (default 3s).
	DiskHold time.Duration
	// LeaderWait bounds the wait for a leader (default 60s).
	LeaderWait time.Duration
	Seed       uint64
}

func (c *NemesisConfig) defaults() {
	if c.PauseHold <= 0 {
		c.PauseHold = 2 * time.Second
	}
	if c.PartitionHold <= 0 {
		c.PartitionHold = 3 * time.Second
	}
	if c.DiskHold <= 0 {
		c.DiskHold = 3 * time.Second
	}
	if c.LeaderWait <= 0 {
		c.LeaderWait = 60 * time.Second
	}
}

// schedule is the faults in a seeded random order.
func (c NemesisConfig) schedule() []FaultKind {
	var kinds []FaultKind
	for range c.Kills {
		kinds = append(kinds, FaultKill)
	}
	for range c.Pauses {
		kinds = append(kinds, FaultPause)
	}
	for range c.Partitions {
		kinds = append(kinds, FaultPartition)
	}
	for range c.DiskFulls {
		kinds = append(kinds, FaultDiskFull)
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x6e656d))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	return kinds
}

// clusterView is the part of GET /v1/cluster the nemesis reads.
type clusterView struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Probe reads the cluster over HTTP.
type Probe struct {
	Target Target
	HTTP   *http.Client
}

// NewProbe returns a probe with a short request timeout.
func NewProbe(t Target) *Probe {
	return &Probe{Target: t, HTTP: &http.Client{Timeout: 3 * time.Second}}
}

// GetJSON GETs a URL and decodes a 200 answer.
func (p *Probe) GetJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s = %d: %s", url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

func (p *Probe) view(ctx context.Context, node string) (clusterView, error) {
	var v clusterView
	err := p.GetJSON(ctx, p.Target.APIURL(node)+"/v1/cluster", &v)
	return v, err
}

// Leader returns the leader the given nodes agree on (each names it, and
// it names itself as leader).
func (p *Probe) Leader(ctx context.Context, nodes []string) (string, clusterView, error) {
	var views []string
	names := map[string]bool{}
	var self string
	var lv clusterView
	for _, n := range nodes {
		v, err := p.view(ctx, n)
		if err != nil {
			return "", lv, err
		}
		views = append(views, fmt.Sprintf("%s→%q(%s,t%d)", n, v.LeaderID, v.State, v.Term))
		names[v.LeaderID] = true
		if v.State == "leader" && v.LeaderID == n {
			self, lv = n, v
		}
	}
	if len(names) != 1 || names[""] || self == "" {
		return "", lv, fmt.Errorf("no agreed leader: %s", strings.Join(views, " "))
	}
	return self, lv, nil
}

// WaitLeader polls until the nodes agree on a leader.
func (p *Probe) WaitLeader(nodes []string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		id, _, err := p.Leader(ctx, nodes)
		cancel()
		if err == nil {
			return id, nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchNewLeader polls the nodes until one names a leader other than old,
// and sends that answer's receipt time.
func (p *Probe) watchNewLeader(ctx context.Context, nodes []string, old string) <-chan leaderSeen {
	out := make(chan leaderSeen, len(nodes))
	for _, n := range nodes {
		go func() {
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				v, err := p.view(rctx, n)
				at := time.Now()
				cancel()
				if err == nil && v.LeaderID != "" && v.LeaderID != old {
					out <- leaderSeen{leader: v.LeaderID, at: at}
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	return out
}

type leaderSeen struct {
	leader string
	at     time.Time
}

// Nemesis runs the faults.
type Nemesis struct {
	cfg    NemesisConfig
	target Target
	probe  *Probe
	rng    *rand.Rand
	logf   func(string, ...any)
}

// NewNemesis prepares the faults of cfg against target.
func NewNemesis(target Target, cfg NemesisConfig, logf func(string, ...any)) *Nemesis {
	cfg.defaults()
	return &Nemesis{cfg: cfg, target: target, probe: NewProbe(target), rng: rand.New(rand.NewPCG(cfg.Seed, 0x6b696c6c)), logf: logf}
}

// Run injects every scheduled fault, one per slot of Duration/faults, and
// returns them; stop (closed) ends it early. An error is returned when the
// cluster does not recover from a fault (no leader within LeaderWait).
func (n *Nemesis) Run(stop <-chan struct{}) ([]Fault, error) {
	kinds := n.cfg.schedule()
	var faults []Fault
	if len(kinds) == 0 {
		select {
		case <-stop:
		case <-time.After(n.cfg.Duration):
		}
		return nil, nil
	}
	slot := n.cfg.Duration / time.Duration(len(kinds))
	start := time.Now()
	for i, kind := range kinds {
		// Strike at a random moment in the first half of the slot.
		at := start.Add(time.Duration(i)*slot + time.Duration(n.rng.Int64N(int64(slot/2)+1)))
		select {
		case <-stop:
			return faults, nil
		case <-time.After(time.Until(at)):
		}
		f, err := n.one(i+1, kind)
		faults = append(faults, f)
		if err != nil {
			return faults, err
		}
		n.logf("fault %d/%d: %s of %s; new leader %s after %s", i+1, len(kinds), kind, f.Victim, f.NewLeader, ms(f.LeaderAfter))
	}
	return faults, nil
}

// one injects one fault on the current leader and waits for the cluster
// to be whole again.
func (n *Nemesis) one(num int, kind FaultKind) (Fault, error) {
	nodes := n.target.Nodes()
	f := Fault{N: num, Kind: kind, LeaderAfter: -1, FirstStepAfter: -1}
	victim, err := n.probe.WaitLeader(nodes, n.cfg.LeaderWait)
	if err != nil {
		return f, fmt.Errorf("fault %d: before the fault: %w", num, err)
	}
	f.Victim = victim
	var survivors []string
	for _, id := range nodes {
		if id != victim {
			survivors = append(survivors, id)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := n.probe.watchNewLeader(ctx, survivors, victim)
	time.Sleep(15 * time.Millisecond) // let the watchers poll once
	if kind != FaultKill {
		// A pause or a partition is meant to catch the leader with steps
		// in flight (their results then stale): strike as soon as one is
		// seen (within a few seconds).
		n.waitInFlight(victim, 5*time.Second)
	}
	f.At = time.Now().Round(0)

	var hold time.Duration
	var hurt, heal func(string) error
	switch kind {
	case FaultKill:
		hold = n.cfg.KillDown
		if hold <= 0 {
			hold = time.Duration(200+n.rng.IntN(1300)) * time.Millisecond
		}
		hurt, heal = n.target.Kill, n.target.Restart
	case FaultPause:
		hold, hurt, heal = n.cfg.PauseHold, n.target.Pause, n.target.Resume
	case FaultPartition:
		hold, hurt, heal = n.cfg.PartitionHold, n.target.Isolate, n.target.Heal
	case FaultDiskFull:
		d, ok := n.target.(DiskFiller)
		if !ok {
			return f, fmt.Errorf("fault %d: the target cannot fill a disk", num)
		}
		hold, hurt, heal = n.cfg.DiskHold, d.FillDisk, d.FreeDisk
	}
	if err := hurt(victim); err != nil {
		f.Error = err.Error()
		return f, fmt.Errorf("fault %d: %s %s: %w", num, kind, victim, err)
	}
	// The victim stays out until a survivor names a new leader (a
	// restarted or resumed victim could otherwise win again), and at least
	// for the hold.
	select {
	case s := <-seen:
		f.NewLeader, f.LeaderAfter = s.leader, s.at.Sub(f.At)
	case <-time.After(n.cfg.LeaderWait):
	}
	if rest := hold - time.Since(f.At); rest > 0 {
		time.Sleep(rest)
	}
	f.Held = time.Since(f.At)
	if err := heal(victim); err != nil {
		f.Error = err.Error()
		return f, fmt.Errorf("fault %d: undo %s of %s: %w", num, kind, victim, err)
	}
	if f.NewLeader == "" {
		f.Error = "no survivor named a new leader"
		return f, fmt.Errorf("fault %d: no survivor named a leader other than %s within %s", num, victim, n.cfg.LeaderWait)
	}
	cancel()
	// Whole again: every node agrees on a leader (the victim caught up
	// enough to know it).
	if _, err := n.probe.WaitLeader(nodes, n.cfg.LeaderWait); err != nil {
		f.Error = err.Error()
		return f, fmt.Errorf("fault %d: after %s of %s: %w", num, kind, victim, err)
	}
	return f, nil
}

// waitInFlight polls the leader's recent tasks (ids are time-ordered, so a
// cursor skips the older ones) until one has a claimed step in flight, or
// timeout passes. It reports whether it saw one.
func (n *Nemesis) waitInFlight(leader string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		cursor := fmt.Sprintf("t-%012x", time.Now().Add(-time.Minute).UnixMilli())
		var page struct {
			Tasks []struct {
				Steps []struct {
					Finished *time.Time `json:"finished"`
				} `json:"steps"`
			} `json:"tasks"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := n.probe.GetJSON(ctx, n.target.APIURL(leader)+"/v1/tasks?limit=500&cursor="+cursor, &page)
		cancel()
		if err == nil {
			for _, t := range page.Tasks {
				// A claimed attempt is the newest one, not finished yet.
				if n := len(t.Steps); n > 0 && t.Steps[n-1].Finished == nil {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FirstSteps fills in each fault's first step by its new leader: the
// earliest step attempt, in any task, whose leader is the new leader and
// which started at or after the fault (the step timeline's times are the
// leader's clock; the machine's clock for processes); and how many of the
// victim's step attempts were in flight at the fault.
func FirstSteps(faults []Fault, tasks []Task) {
	for i := range faults {
		f := &faults[i]
		if f.NewLeader == "" {
			continue
		}
		until := time.Time{}
		if i+1 < len(faults) {
			until = faults[i+1].At
		}
		for _, t := range tasks {
			for _, s := range t.Steps {
				if s.Leader == f.Victim && !s.Started.After(f.At) && (s.Finished == nil || s.Finished.After(f.At)) {
					f.InFlight++
				}
				if s.Leader != f.NewLeader || s.Started.Before(f.At) || (!until.IsZero() && !s.Started.Before(until)) {
					continue
				}
				if d := s.Started.Sub(f.At); f.FirstStepAfter < 0 || d < f.FirstStepAfter {
					f.FirstStepAfter, f.FirstStepTask, f.FirstStepName = d, t.ID, s.Step
				}
			}
		}
	}
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
