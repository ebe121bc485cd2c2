package server

import (
	"strings"
	"testing"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft's metric keys and labels come out Prometheus-style: snake_case
// names and labels, counters in _total, timings in seconds (raft's
// network transport labels its RPC timings rpcType).
func TestPromSinkNames(t *testing.T) {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	p := promSink{sink}
	rpc := []gometrics.Label{{Name: "rpcType", Value: "AppendEntries"}}
	p.AddSampleWithLabels([]string{"tdf", "raft", "net", "rpcDecode"}, 250, rpc)
	p.IncrCounterWithLabels([]string{"tdf", "raft", "apply"}, 1, nil)
	p.AddSample([]string{"tdf", "raft", "commitNumLogs"}, 3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(sink)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetName() == "tdf_raft_net_rpc_decode_seconds" {
			m := mf.GetMetric()[0]
			if l := m.GetLabel()[0]; l.GetName() != "rpc_type" || m.GetSummary().GetSampleSum() != 0.25 {
				t.Errorf("rpc decode: label %s, sum %v; want rpc_type and 0.25 s", l.GetName(), m.GetSummary().GetSampleSum())
			}
		}
	}
	want := "tdf_raft_apply_total tdf_raft_commit_num_logs tdf_raft_net_rpc_decode_seconds"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("names %q, want %q", got, want)
	}
}
