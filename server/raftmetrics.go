package server

import (
	"strings"
	"sync"
	"unicode"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft's own metrics (last contact, commit and apply times, elections,
// snapshots…) go through go-metrics, whose global sink is process-wide:
// it is installed once, and every node's registry collects it. Names are
// made Prometheus-style on the way in: snake_case, counters end in _total,
// timings (milliseconds in go-metrics) become _seconds.
var (
	raftSinkOnce sync.Once
	raftSink     *gmprom.PrometheusSink
)

// raftMetricsCollector returns the process's go-metrics Prometheus sink,
// installing it as go-metrics' global sink on first use (nil if it
// cannot be made).
func raftMetricsCollector() prometheus.Collector {
	raftSinkOnce.Do(func() {
		// The sink registers itself with Registerer; each node's registry
		// collects it instead, so a registry of its own keeps it out of the
		// process's default one.
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: prometheus.NewRegistry()})
		if err != nil {
			return
		}
		cfg := gometrics.DefaultConfig("tdf")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false // the Go collector has them
		cfg.EnableServiceLabel = false
		if _, err := gometrics.NewGlobal(cfg, promSink{sink}); err != nil {
			return
		}
		raftSink = sink
	})
	if raftSink == nil {
		return nil
	}
	return raftSink
}

// promSink renames go-metrics keys for Prometheus before the sink sees
// them.
type promSink struct{ s gometrics.MetricSink }

func (p promSink) SetGauge(key []string, val float32) { p.s.SetGauge(snakeKey(key), val) }
func (p promSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	p.s.SetGaugeWithLabels(snakeKey(key), val, snakeLabels(labels))
}
func (p promSink) EmitKey(key []string, val float32) { p.s.EmitKey(snakeKey(key), val) }
func (p promSink) IncrCounter(key []string, val float32) {
	p.s.IncrCounter(suffixed(key, "total"), val)
}
func (p promSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	p.s.IncrCounterWithLabels(suffixed(key, "total"), val, snakeLabels(labels))
}
func (p promSink) AddSample(key []string, val float32) {
	k, v := sample(key, val)
	p.s.AddSample(k, v)
}
func (p promSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	k, v := sample(key, val)
	p.s.AddSampleWithLabels(k, v, snakeLabels(labels))
}

// sample names a sample: a timing (milliseconds, from MeasureSince) in
// seconds, a count or a ratio (raft's …NumLogs, …Num, saturation) as it is.
func sample(key []string, val float32) ([]string, float32) {
	last := strings.ToLower(key[len(key)-1])
	if strings.Contains(last, "num") || strings.Contains(last, "saturation") {
		return snakeKey(key), val
	}
	return suffixed(key, "seconds"), val / 1000
}

func suffixed(key []string, suffix string) []string {
	k := snakeKey(key)
	if !strings.HasSuffix(k[len(k)-1], "_"+suffix) {
		k[len(k)-1] += "_" + suffix
	}
	return k
}

// snakeKey turns each part of a key into snake_case (lastContact →
// last_contact).
func snakeKey(key []string) []string {
	out := make([]string, len(key))
	for i, part := range key {
		var b strings.Builder
		for j, r := range part {
			if unicode.IsUpper(r) {
				if j > 0 {
					b.WriteByte('_')
				}
				r = unicode.ToLower(r)
			}
			b.WriteRune(r)
		}
		out[i] = b.String()
	}
	return out
}

// snakeLabels renames labels to snake_case (raft's network transport
// labels its RPC timings rpcType).
func snakeLabels(labels []gometrics.Label) []gometrics.Label {
	out := make([]gometrics.Label, len(labels))
	for i, l := range labels {
		out[i] = gometrics.Label{Name: snakeKey([]string{l.Name})[0], Value: l.Value}
	}
	return out
}
