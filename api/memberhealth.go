package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/cluster"
)

// Members' health is the leader's view (cluster/health.go): how long ago
// each member last answered its heartbeats and how far its log is behind.
// A follower asked for the cluster's status fetches that view from the
// leader, so every node's GET /v1/cluster (and tdf cluster status, and the
// dashboard) shows it; /metrics exports it on the leader.

// leaderViewTimeout bounds the fetch of the leader's view.
const leaderViewTimeout = time.Second

// clusterStatusWithHealth is this node's status with the leader's view of
// the members' health.
func (s *Server) clusterStatusWithHealth(c *gin.Context) cluster.Status {
	st := s.cfg.Node.Status()
	if st.HealthFrom != "" || c.GetHeader(headerHops) != "" {
		return st
	}
	id, url, ok := s.cfg.Node.LeaderAPI()
	if !ok || id == s.cfg.Node.ID() {
		return st
	}
	view, err := s.fetchLeaderView(c, url)
	if err != nil {
		s.log.Debug("leader's view of the members unavailable", "leader", id, "error", err)
		return st
	}
	byID := map[string]*cluster.MemberHealth{}
	for _, m := range view.Members {
		byID[m.ID] = m.Health
	}
	for i := range st.Members {
		st.Members[i].Health = byID[st.Members[i].ID]
	}
	st.HealthFrom = view.HealthFrom
	return st
}

// fetchLeaderView asks the leader for its status, with the caller's
// credentials.
func (s *Server) fetchLeaderView(c *gin.Context, base string) (*cluster.Status, error) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), leaderViewTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	if a := c.GetHeader("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	for _, ck := range c.Request.Cookies() {
		req.AddCookie(ck)
	}
	req.Header.Set(headerHops, "1")
	req.Header.Set(headerForwardedBy, s.cfg.Node.ID())
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &httpStatusError{resp.StatusCode}
	}
	var st cluster.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return "HTTP " + http.StatusText(e.code) }

// memberCollector exports the leader's view of its members.
type memberCollector struct {
	s                     *Server
	contact, lag, healthy *prometheus.Desc
}

// registerMemberMetricsOn registers the members' health gauges.
func (s *Server) registerMemberMetricsOn(m *Metrics) {
	if m == nil {
		return
	}
	reg, ok := m.gatherer.(prometheus.Registerer)
	if !ok {
		return
	}
	labels := []string{"member"}
	_ = reg.Register(&memberCollector{s: s,
		contact: prometheus.NewDesc("tdf_member_last_contact_seconds", "Seconds since the member last answered the leader (exported by the leader).", labels, nil),
		lag:     prometheus.NewDesc("tdf_member_lag_entries", "Entries the member's log is behind the leader's (exported by the leader).", labels, nil),
		healthy: prometheus.NewDesc("tdf_member_healthy", "1 if the leader finds the member healthy (recent contact, small lag), else 0.", labels, nil),
	})
}

func (mc *memberCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- mc.contact
	ch <- mc.lag
	ch <- mc.healthy
}

func (mc *memberCollector) Collect(ch chan<- prometheus.Metric) {
	st := mc.s.cfg.Node.Status()
	for _, m := range st.Members {
		h := m.Health
		if h == nil {
			continue
		}
		ok := 0.0
		if h.Healthy {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(mc.contact, prometheus.GaugeValue, h.LastContactSeconds, m.ID)
		ch <- prometheus.MustNewConstMetric(mc.lag, prometheus.GaugeValue, float64(h.Lag), m.ID)
		ch <- prometheus.MustNewConstMetric(mc.healthy, prometheus.GaugeValue, ok, m.ID)
	}
}
