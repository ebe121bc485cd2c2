package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/fsm"
)

// Pricing returns the hourly price of a node of that VM size in that
// location, in currency, from the cloud's price list; ok is false when it
// is not known.
type Pricing func(ctx context.Context, size, location string) (hourly float64, currency string, ok bool)

// NodeCost is what a node costs: its hourly price and what it has accrued
// since its creation (until its deletion, for a deleted node).
type NodeCost struct {
	Currency string  `json:"currency"`
	Hourly   float64 `json:"hourly"`
	Accrued  float64 `json:"accrued"`
}

// FleetCost is the body of GET /v1/costs.
type FleetCost struct {
	Currency string `json:"currency"`
	// Hourly is what the live nodes cost per hour together; Accrued is
	// what every node known, live or deleted, has cost.
	Hourly  float64 `json:"hourly"`
	Accrued float64 `json:"accrued"`
	Nodes   []struct {
		ID     string         `json:"id"`
		Status fsm.NodeStatus `json:"status"`
		NodeCost
	} `json:"nodes"`
}

// nodeCost prices one node, or nil without a price list.
func (s *Server) nodeCost(ctx context.Context, n *fsm.Node, now time.Time) *NodeCost {
	if s.cfg.Pricing == nil {
		return nil
	}
	hourly, cur, ok := s.cfg.Pricing(ctx, n.Size, n.Location)
	if !ok {
		return nil
	}
	end := now
	if n.DeletedAt != nil {
		end = *n.DeletedAt
	}
	hours := max(0, end.Sub(n.CreatedAt).Hours())
	return &NodeCost{Currency: cur, Hourly: hourly, Accrued: hourly * hours}
}

func (s *Server) fleetCost(c *gin.Context) {
	f := s.cfg.Node.FSM()
	out := s.fleet(c.Request.Context(), f.Nodes("", ""), s.now())
	c.JSON(http.StatusOK, out)
}

func (s *Server) fleet(ctx context.Context, nodes []*fsm.Node, now time.Time) FleetCost {
	out := FleetCost{Currency: "EUR"}
	out.Nodes = out.Nodes[:0]
	for _, n := range nodes {
		nc := s.nodeCost(ctx, n, now)
		if nc == nil {
			continue
		}
		out.Currency = nc.Currency
		out.Accrued += nc.Accrued
		if n.Status != fsm.NodeDeleted {
			out.Hourly += nc.Hourly
		}
		out.Nodes = append(out.Nodes, struct {
			ID     string         `json:"id"`
			Status fsm.NodeStatus `json:"status"`
			NodeCost
		}{n.ID, n.Status, *nc})
	}
	return out
}

// registerCostMetrics exports tdf_fleet_cost_euros (accrued, every node)
// and tdf_fleet_cost_euros_per_hour (live nodes), read at each scrape.
func (s *Server) registerCostMetrics(reg prometheus.Registerer) {
	if s.cfg.Pricing == nil || reg == nil {
		return
	}
	fleet := func() FleetCost {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.fleet(ctx, s.cfg.Node.FSM().Nodes("", ""), s.now())
	}
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tdf_fleet_cost_euros", Help: "What every node of the cluster has cost so far, from the cloud's hourly prices (net, EUR).",
	}, func() float64 { return fleet().Accrued }))
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tdf_fleet_cost_euros_per_hour", Help: "What the live nodes cost per hour together (net, EUR).",
	}, func() float64 { return fleet().Hourly }))
}

// registerCostMetricsOn registers the cost gauges on the registry behind m.
func (s *Server) registerCostMetricsOn(m *Metrics) {
	if m == nil {
		return
	}
	if reg, ok := m.gatherer.(prometheus.Registerer); ok {
		s.registerCostMetrics(reg)
	}
}
