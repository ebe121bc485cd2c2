package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Plan is one chaos run.
type Plan struct {
	Workload WorkloadConfig
	Nemesis  NemesisConfig
	// Warmup is how long the workload runs before the first fault.
	Warmup time.Duration
	// SettleWait bounds, after the workload stops, the wait for every
	// acknowledged task to end and every server to be deleted (default
	// 5m).
	SettleWait time.Duration
	// TaskBound is how long an acknowledged task may take to end (default
	// 5m).
	TaskBound time.Duration
	// LinearizeTimeout bounds porcupine (default 2m).
	LinearizeTimeout time.Duration
	// ReportDir, if set, receives report.json, summary.txt and, when the
	// linearizability check fails, linearizability.html.
	ReportDir string
	Logf      func(string, ...any)
}

func (p *Plan) defaults() {
	if p.SettleWait <= 0 {
		p.SettleWait = 5 * time.Minute
	}
	if p.TaskBound <= 0 {
		p.TaskBound = 5 * time.Minute
	}
	if p.LinearizeTimeout <= 0 {
		p.LinearizeTimeout = 2 * time.Minute
	}
	if p.Logf == nil {
		p.Logf = func(string, ...any) {}
	}
}

// Stats is a distribution's summary (nearest-rank percentiles).
type Stats struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func (s Stats) String() string {
	if s.N == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s (n=%d)", ms(s.P50), ms(s.P99), ms(s.Max), s.N)
}

// NewStats summarises durations; negative ones (not measured) are left out.
func NewStats(ds []time.Duration) Stats {
	var v []time.Duration
	for _, d := range ds {
		if d >= 0 {
			v = append(v, d)
		}
	}
	if len(v) == 0 {
		return Stats{}
	}
	slices.Sort(v)
	rank := func(p float64) time.Duration {
		r := int(math.Ceil(p / 100 * float64(len(v))))
		return v[min(max(r, 1), len(v))-1]
	}
	return Stats{N: len(v), P50: rank(50), P99: rank(99), Max: v[len(v)-1]}
}

// Report is the outcome of a run.
type Report struct {
	Pass     bool           `json:"pass"`
	Started  time.Time      `json:"started"`
	Duration time.Duration  `json:"duration_ns"`
	Faults   map[string]int `json:"faults"`
	// FaultsInFlight counts, by kind, the faults that hit the leader while
	// it had step attempts in flight.
	FaultsInFlight map[string]int `json:"faults_with_steps_in_flight"`
	Tasks          int            `json:"tasks"`
	Submitted      int            `json:"submitted"`
	Abandoned      []string       `json:"abandoned,omitempty"`
	Reads          int            `json:"reads"`
	Statuses       map[string]int `json:"final_statuses"`
	// Failed lists the failed tasks and their error messages: a terminal
	// state, so not a violation, but a task that did not survive the faults.
	Failed []string `json:"failed,omitempty"`
	// Failover: fault → a survivor names a new leader; fault → the new
	// leader's first step. Kills only, and every fault.
	KillToLeader       Stats                 `json:"kill_to_leader"`
	KillToFirstStep    Stats                 `json:"kill_to_first_step"`
	FaultToLeader      Stats                 `json:"fault_to_leader"`
	FaultToFirstStep   Stats                 `json:"fault_to_first_step"`
	Unavailability     Stats                 `json:"client_unavailability"`
	FencedResults      int64                 `json:"fenced_results"`
	FencedErrorRecords int                   `json:"fenced_error_records"`
	Linearizability    LinearizabilityResult `json:"linearizability"`
	Converged          *NodeHash             `json:"converged,omitempty"`
	// Divergence says where and why the nodes' states differ, when they do
	// (diverge.go).
	Divergence []string    `json:"divergence,omitempty"`
	Violations []Violation `json:"violations"`
	FaultLog   []Fault     `json:"fault_log"`
	Errors     []string    `json:"errors,omitempty"`
}

// Summary is the report in a few lines.
func (r *Report) Summary() string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "chaos run: %s after %s\n", verdict, r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "  faults: %d kills, %d pauses, %d partitions, %d full disks (with the leader's steps in flight: %d, %d, %d, %d)\n",
		r.Faults[string(FaultKill)], r.Faults[string(FaultPause)], r.Faults[string(FaultPartition)], r.Faults[string(FaultDiskFull)],
		r.FaultsInFlight[string(FaultKill)], r.FaultsInFlight[string(FaultPause)], r.FaultsInFlight[string(FaultPartition)], r.FaultsInFlight[string(FaultDiskFull)])
	fmt.Fprintf(&b, "  tasks: %d acknowledged (%d in the cluster, final statuses %v), %d consistent reads, %d submissions abandoned\n",
		r.Submitted, r.Tasks, r.Statuses, r.Reads, len(r.Abandoned))
	fmt.Fprintf(&b, "  kill → new leader:      %s\n", r.KillToLeader)
	fmt.Fprintf(&b, "  kill → first step:      %s\n", r.KillToFirstStep)
	fmt.Fprintf(&b, "  any fault → new leader: %s\n", r.FaultToLeader)
	fmt.Fprintf(&b, "  any fault → first step: %s\n", r.FaultToFirstStep)
	fmt.Fprintf(&b, "  client unavailability windows: %s\n", r.Unavailability)
	fmt.Fprintf(&b, "  stale results fencing rejected: %d (tdf_fenced_results_total), %d fenced error records\n", r.FencedResults, r.FencedErrorRecords)
	fmt.Fprintf(&b, "  linearizability (porcupine, per task): %s over %d operations on %d tasks\n", r.Linearizability.Result, r.Linearizability.Operations, r.Linearizability.Tasks)
	if r.Converged != nil {
		fmt.Fprintf(&b, "  converged: every node at index %d, hash %.16s\n", r.Converged.AppliedIndex, r.Converged.Hash)
	}
	for i, f := range r.Failed {
		if i == 10 {
			fmt.Fprintf(&b, "  … %d more failed tasks in the JSON report\n", len(r.Failed)-10)
			break
		}
		fmt.Fprintf(&b, "  failed task %s\n", f)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	for _, d := range r.Divergence {
		fmt.Fprintf(&b, "  divergence: %s\n", d)
	}
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "  … %d more violations in the JSON report\n", len(r.Violations)-20)
			break
		}
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	return b.String()
}

// Run runs the workload and the nemesis against target, waits for the
// cluster to settle, checks everything and writes the report. The
// returned error is for a run that could not be carried out; a run that
// was carried out returns its report, passing or not.
func Run(target Target, p Plan) (*Report, error) {
	p.defaults()
	logf := p.Logf
	probe := NewProbe(target)
	nodes := target.Nodes()
	began := time.Now()
	rep := &Report{Started: began, Faults: map[string]int{}, FaultsInFlight: map[string]int{}}
	if _, err := probe.WaitLeader(nodes, time.Minute); err != nil {
		return nil, fmt.Errorf("no leader before the run: %w", err)
	}
	w := StartWorkload(target, p.Workload)
	if p.Warmup > 0 {
		time.Sleep(p.Warmup)
	}
	nem := NewNemesis(target, p.Nemesis, logf)
	faults, nemErr := nem.Run(nil)
	logf("faults done after %s; stopping the workload (%d submissions acknowledged)", time.Since(began).Round(time.Second), w.Submitted())
	w.Stop()
	var h History
	h.Start, h.End, h.Faults = began, time.Now(), faults
	w.Record(&h)
	if nemErr != nil {
		rep.Errors = append(rep.Errors, "nemesis: "+nemErr.Error())
	}
	final := settle(probe, nodes, h, p, logf)
	rep.Errors = append(rep.Errors, final.errors...)
	FirstSteps(h.Faults, final.tasks)
	check(rep, h, final, p)
	rep.Duration = time.Since(began)
	if err := rep.write(p.ReportDir, h, final.tasks); err != nil {
		rep.Errors = append(rep.Errors, "report: "+err.Error())
		rep.Pass = false
	}
	return rep, nil
}

// finalState is what the checker reads at the end.
type finalState struct {
	tasks         []Task
	ledger        []LedgerEvent
	servers       []FakeServer
	hashes        []NodeHash
	fenced        int64
	fencedRecords int
	errors        []string
	// divergence is what diagnoseDivergence found when the hashes differ.
	divergence []string
}

// settle waits for the cluster to finish the acknowledged tasks and
// delete every server, then reads the final state.
func settle(probe *Probe, nodes []string, h History, p Plan, logf func(string, ...any)) finalState {
	var fs finalState
	fail := func(format string, args ...any) { fs.errors = append(fs.errors, fmt.Sprintf(format, args...)) }
	leader, err := probe.WaitLeader(nodes, 2*time.Minute)
	if err != nil {
		fail("no leader after the run: %v", err)
		return fs
	}
	acked := map[string]bool{}
	for _, op := range h.Ops {
		if op.Kind == OpSubmit {
			acked[op.TaskID] = true
		}
	}
	start := time.Now()
	deadline := start.Add(p.SettleWait)
	for {
		tasks, err := listTasks(probe, leader)
		if err == nil {
			open := 0
			for _, t := range tasks {
				if acked[t.ID] && !Terminal(t.Status) {
					open++
				}
			}
			var servers []FakeServer
			servers, err = fakeServers(probe)
			if err == nil && open == 0 && len(servers) == 0 {
				logf("every acknowledged task ended and every server is gone %s after the workload stopped", time.Since(start).Round(time.Second))
				break
			}
			if err == nil {
				err = fmt.Errorf("%d acknowledged tasks not ended, %d servers left", open, len(servers))
			}
		}
		if time.Now().After(deadline) {
			fail("not settled within %s: %v", p.SettleWait, err)
			break
		}
		time.Sleep(2 * time.Second)
		if l, lerr := probe.WaitLeader(nodes, time.Minute); lerr == nil {
			leader = l
		}
	}
	// Convergence: one round in which every node reports the same index
	// and hash (the leader may commit at any moment, so retry).
	var lastErr error
	for cdl := time.Now().Add(2 * time.Minute); ; {
		fs.hashes, lastErr = hashes(probe, nodes)
		if lastErr == nil && len(CheckConverged(fs.hashes)) == 0 {
			break
		}
		if time.Now().After(cdl) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if lastErr != nil {
		fail("state hashes: %v", lastErr)
	}
	if fs.tasks, err = listTasks(probe, leader); err != nil {
		fail("list tasks: %v", err)
	}
	if fs.ledger, err = ledger(probe); err != nil {
		fail("ledger: %v", err)
	}
	if fs.servers, err = fakeServers(probe); err != nil {
		fail("fake servers: %v", err)
	}
	if fs.fenced, err = fencedMetric(probe, leader); err != nil {
		fail("metrics: %v", err)
	}
	if fs.fencedRecords, err = fencedRecords(probe, leader); err != nil {
		fail("error records: %v", err)
	}
	if lastErr == nil && len(CheckConverged(fs.hashes)) > 0 {
		// Last: it restarts the odd nodes.
		fs.divergence = diagnoseDivergence(probe.Target, probe, nodes, fs.hashes, logf)
	}
	return fs
}

// check runs every check and fills in the report.
func check(rep *Report, h History, fs finalState, p Plan) {
	rep.Tasks, rep.Submitted, rep.Abandoned = len(fs.tasks), h.Submitted, h.Abandoned
	rep.Statuses = map[string]int{}
	for _, t := range fs.tasks {
		rep.Statuses[t.Status]++
		if t.Status == "failed" {
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %s", t.ID, t.ErrorMessage))
		}
	}
	for _, op := range h.Ops {
		if op.Kind == OpRead {
			rep.Reads++
		}
	}
	var killLeader, killStep, anyLeader, anyStep, outages []time.Duration
	for _, f := range h.Faults {
		rep.Faults[string(f.Kind)]++
		if f.InFlight > 0 {
			rep.FaultsInFlight[string(f.Kind)]++
		}
		anyLeader, anyStep = append(anyLeader, f.LeaderAfter), append(anyStep, f.FirstStepAfter)
		if f.Kind == FaultKill {
			killLeader, killStep = append(killLeader, f.LeaderAfter), append(killStep, f.FirstStepAfter)
		}
	}
	for _, o := range h.Outages {
		outages = append(outages, o.Length)
	}
	rep.KillToLeader, rep.KillToFirstStep = NewStats(killLeader), NewStats(killStep)
	rep.FaultToLeader, rep.FaultToFirstStep = NewStats(anyLeader), NewStats(anyStep)
	rep.Unavailability = NewStats(outages)
	rep.FencedResults, rep.FencedErrorRecords = fs.fenced, fs.fencedRecords
	rep.Divergence = fs.divergence
	rep.FaultLog = h.Faults

	var vs []Violation
	vs = append(vs, CheckAcknowledgedTasks(h.Ops, fs.tasks, p.TaskBound)...)
	vs = append(vs, CheckStatusHistories(fs.tasks)...)
	vs = append(vs, CheckTimelines(fs.tasks)...)
	lr, lv := CheckLinearizable(h.Ops, p.LinearizeTimeout)
	rep.Linearizability = lr
	vs = append(vs, lv...)
	vs = append(vs, CheckLedger(fs.tasks, fs.ledger, fs.servers)...)
	cv := CheckConverged(fs.hashes)
	vs = append(vs, cv...)
	if len(cv) == 0 && len(fs.hashes) > 0 {
		rep.Converged = &fs.hashes[0]
	}
	rep.Violations = vs
	rep.Pass = len(vs) == 0 && len(rep.Errors) == 0
}

// write saves report.json, summary.txt, history.json, tasks.json (the
// final tasks) and, when porcupine found the history illegal, its HTML
// visualisation.
func (r *Report) write(dir string, h History, tasks []Task) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(r.Summary()), 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "history.json"), h); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "tasks.json"), tasks); err != nil {
		return err
	}
	if r.Linearizability.Result != "Ok" && r.Linearizability.Operations > 0 {
		f, err := os.Create(filepath.Join(dir, "linearizability.html"))
		if err != nil {
			return err
		}
		defer f.Close()
		return r.Linearizability.WriteVisualization(f)
	}
	return nil
}

func writeJSON(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := json.NewEncoder(bw).Encode(v); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ---------------------------------------------------------------------------
// Final reads

func readCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// listTasks pages through GET /v1/tasks on a node.
func listTasks(p *Probe, node string) ([]Task, error) {
	var all []Task
	cursor := ""
	slow := &Probe{Target: p.Target, HTTP: longClient}
	for {
		u := p.Target.APIURL(node) + "/v1/tasks?limit=500"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Tasks      []Task `json:"tasks"`
			NextCursor string `json:"next_cursor"`
		}
		ctx, cancel := readCtx()
		err := slow.GetJSON(ctx, u, &page)
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, page.Tasks...)
		if page.NextCursor == "" || page.NextCursor == cursor {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

func ledger(p *Probe) ([]LedgerEvent, error) {
	var out struct {
		Events []LedgerEvent `json:"events"`
	}
	ctx, cancel := readCtx()
	defer cancel()
	err := (&Probe{Target: p.Target, HTTP: longClient}).GetJSON(ctx, p.Target.LedgerURL()+"/fake/ledger", &out)
	return out.Events, err
}

func fakeServers(p *Probe) ([]FakeServer, error) {
	var out struct {
		Servers []FakeServer `json:"servers"`
	}
	ctx, cancel := readCtx()
	defer cancel()
	err := (&Probe{Target: p.Target, HTTP: longClient}).GetJSON(ctx, p.Target.LedgerURL()+"/fake/servers", &out)
	return out.Servers, err
}

// hashes asks every node at once for its state hash.
func hashes(p *Probe, nodes []string) ([]NodeHash, error) {
	out := make([]NodeHash, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := readCtx()
			defer cancel()
			errs[i] = (&Probe{Target: p.Target, HTTP: longClient}).GetJSON(ctx, p.Target.APIURL(n)+"/v1/cluster/state-hash", &out[i])
			if out[i].NodeID == "" {
				out[i].NodeID = n
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// fencedMetric reads tdf_fenced_results_total from a node's /metrics
// (the count is replicated, so any node's is the cluster's).
func fencedMetric(p *Probe, node string) (int64, error) {
	ctx, cancel := readCtx()
	defer cancel()
	text, err := getText(ctx, p.Target.APIURL(node)+"/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "tdf_fenced_results_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no tdf_fenced_results_total in %s's metrics", node)
}

// fencedRecords counts the error records of kind fenced.
func fencedRecords(p *Probe, node string) (int, error) {
	var out struct {
		Errors []json.RawMessage `json:"errors"`
	}
	ctx, cancel := readCtx()
	defer cancel()
	err := (&Probe{Target: p.Target, HTTP: longClient}).GetJSON(ctx, p.Target.APIURL(node)+"/v1/errors?kind=fenced&limit=500", &out)
	return len(out.Errors), err
}

// longClient is for the final reads, which may be large.
var longClient = &http.Client{Timeout: 90 * time.Second}

func getText(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := longClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s = %d", u, resp.StatusCode)
	}
	return string(data), nil
}
