package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/internal/buildinfo"
)

// metrics are the node's Prometheus metrics. Histograms are fed through
// the hooks of the runner and the cluster; everything else is read from
// the node's state when scraped.
type metrics struct {
	reg      *prometheus.Registry
	stepDur  *prometheus.HistogramVec
	lateness prometheus.Histogram
	apply    prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		stepDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tdf_step_duration_seconds", Help: "Duration of step attempts run by this node as leader, by step and outcome (outcome=retry counts retries).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"step", "outcome"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tdf_alarm_firing_lateness_seconds", Help: "How late alarms fired after their due time.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 12),
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tdf_raft_apply_seconds", Help: "Latency of committed raft applies proposed by this node.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 3, 12),
		}),
	}
	reg.MustRegister(m.stepDur, m.lateness, m.apply,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
	if raft := raftMetricsCollector(); raft != nil {
		reg.MustRegister(raft)
	}
	return m
}

func (m *metrics) onStep(step fsm.Step, outcome fsm.Outcome, took time.Duration) {
	m.stepDur.WithLabelValues(string(step), string(outcome)).Observe(took.Seconds())
}

func (m *metrics) onFire(late time.Duration) { m.lateness.Observe(max(late, 0).Seconds()) }

func (m *metrics) onApply(took time.Duration) { m.apply.Observe(took.Seconds()) }

// registerState adds the metrics read from the node's state at scrape time.
func (m *metrics) registerState(s *Server) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	st := s.Runner.Stats()
	r := s.Node.Raft()
	m.reg.MustRegister(
		gauge("tdf_raft_term", "Current raft term.", func() float64 { return float64(r.CurrentTerm()) }),
		gauge("tdf_raft_commit_index", "Raft commit index.", func() float64 { return float64(r.CommitIndex()) }),
		gauge("tdf_raft_applied_index", "Index of the last entry applied to the FSM.", func() float64 { return float64(s.FSM.AppliedIndex()) }),
		gauge("tdf_is_leader", "1 if this node is the ready leader.", func() float64 {
			if ok, _ := s.Node.LeaderReady(); ok {
				return 1
			}
			return 0
		}),
		counter("tdf_leader_changes_total", "Leader changes this node observed.", func() float64 { return float64(s.Node.LeaderChanges()) }),
		gauge("tdf_pending_alarms", "Alarms in the leader's wheel (0 on followers).", func() float64 { return float64(s.Runner.PendingAlarms()) }),
		counter("tdf_fenced_results_total", "Stale step claims and results the FSM rejected (replicated count).", func() float64 { return float64(s.FSM.RejectedCount()) }),
		counter("tdf_step_claims_total", "Step claims this node committed as leader.", func() float64 { return float64(st.Claims.Load()) }),
		counter("tdf_step_redispatched_total", "Claims re-dispatched as a new attempt after an earlier attempt was cut short.", func() float64 { return float64(st.Redispatched.Load()) }),
		counter("tdf_step_timeouts_total", "Waiting-step deadlines fired.", func() float64 { return float64(st.Timeouts.Load()) }),
		counter("tdf_sweeper_actions_total", "Tasks the stuck-task sweeper rescheduled or failed.", func() float64 { return float64(st.SweeperActions.Load()) }),
		counter("tdf_node_alarms_total", "Node expiries and server deletion attempts.", func() float64 { return float64(st.NodeAlarms.Load()) }),
		&stateCollector{fsm: s.FSM},
	)
	m.registerDisk(s)
}

// stateCollector reports tasks and nodes by status from the local FSM.
// The task counts are kept by the FSM as tasks change: a scrape costs the
// same with a million tasks as with a thousand.
type stateCollector struct{ fsm *fsm.FSM }

var (
	tasksDesc = prometheus.NewDesc("tdf_tasks", "Tasks by status.", []string{"status"}, nil)
	endedDesc = prometheus.NewDesc("tdf_tasks_ended_total", "Tasks that ended, by outcome (completed, failed, cancelled), since this node's state was built (start or restore).", []string{"status"}, nil)
	nodesDesc = prometheus.NewDesc("tdf_nodes", "Nodes (VMs) by lifecycle status.", []string{"status"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tasksDesc
	ch <- endedDesc
	ch <- nodesDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for s, n := range c.fsm.TaskCounts() {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), string(s))
	}
	for s, n := range c.fsm.TaskOutcomes() {
		ch <- prometheus.MustNewConstMetric(endedDesc, prometheus.CounterValue, float64(n), string(s))
	}
	nodes := map[fsm.NodeStatus]int{fsm.NodeActive: 0, fsm.NodeWarm: 0, fsm.NodeDestroying: 0, fsm.NodeDeleted: 0}
	for _, n := range c.fsm.Nodes("", "") {
		nodes[n.Status]++
	}
	for s, n := range nodes {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(n), string(s))
	}
}

// buildInfoGauge is tdf_build_info: 1, labelled with the build's version,
// commit and Go version.
func buildInfoGauge() prometheus.Collector {
	in := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tdf_build_info", Help: "The running build: always 1, labelled with version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.ShortCommit(), "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}
