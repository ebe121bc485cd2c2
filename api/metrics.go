package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the API's own Prometheus metrics.
type Metrics struct {
	forwarded *prometheus.CounterVec
	callbacks *prometheus.CounterVec
	limited   prometheus.Counter
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	gatherer  prometheus.Gatherer
}

// NewMetrics registers the API's metrics with reg and serves everything
// gathered from it at /metrics.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdf_forwarded_requests_total", Help: "Requests this node forwarded to the leader, by method and answer code.",
		}, []string{"method", "code"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdf_callbacks_total", Help: "VM agent callbacks received, by kind and result.",
		}, []string{"kind", "result"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tdf_rate_limited_requests_total", Help: "API requests answered 429 because the caller's token bucket was empty.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdf_http_requests_total", Help: "HTTP requests answered by this node, by method, route template (unmatched: no route) and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tdf_http_request_duration_seconds", Help: "Time to answer HTTP requests, by method and route template (an event stream's is its lifetime).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"method", "route"}),
		gatherer: reg,
	}
	reg.MustRegister(m.forwarded, m.callbacks, m.limited, m.requests, m.latency)
	return m
}

func (m *Metrics) countForward(method string, code int) {
	if m != nil {
		m.forwarded.WithLabelValues(method, strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) countRateLimited() {
	if m != nil {
		m.limited.Inc()
	}
}

// countCallback counts a callback by kind and by how it was answered.
func (s *Server) countCallback(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if s.cfg.Metrics == nil {
			return
		}
		result := "accepted"
		switch st := c.Writer.Status(); {
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			result = "unauthorized"
		case st >= 500:
			result = "unavailable"
		case st >= 400:
			result = "rejected"
		}
		s.cfg.Metrics.callbacks.WithLabelValues(kind, result).Inc()
	}
}

func (s *Server) metrics(c *gin.Context) {
	if s.cfg.Metrics == nil {
		abortError(c, http.StatusNotFound, CodeNotFound, "metrics are not enabled")
		return
	}
	promhttp.HandlerFor(s.cfg.Metrics.gatherer, promhttp.HandlerOpts{}).ServeHTTP(c.Writer, c.Request)
}

// countRequest counts every request by its route template (never the raw
// path: ids would make a series each) and answer code.
func (s *Server) countRequest(c *gin.Context) {
	m := s.cfg.Metrics
	if m == nil {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := c.Request.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(c.Writer.Status())).Inc()
	m.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
}
