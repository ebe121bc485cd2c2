package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/api"
)

// registerStreams exports how many event streams this node serves (capped
// by the hub's limits, docs/api.md).
func (m *metrics) registerStreams(hub *api.EventHub) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tdf_event_streams_open", Help: "Open GET /v1/events streams on this node."},
		func() float64 { return float64(hub.OpenStreams()) }))
}
