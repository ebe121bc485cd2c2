package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
)

// diskReporter is the part of a cluster node that reports its disk
// (cluster.Node; test fakes need not).
type diskReporter interface {
	DiskStatus() cluster.DiskStatus
}

// diskStatus is the node's disk status, if it reports one.
func (s *Server) diskStatus() (cluster.DiskStatus, bool) {
	d, ok := s.cfg.Node.(diskReporter)
	if !ok {
		return cluster.DiskStatus{}, false
	}
	return d.DiskStatus(), true
}

// diskFailed reports whether this node cannot write its log.
func (s *Server) diskFailed() bool {
	d, known := s.diskStatus()
	return known && !d.OK
}

// servesReads sends a read on to the leader while this node cannot write
// its log: its state is frozen at the last entry it could store, and
// serving it would answer 404 for tasks acknowledged since. Without a
// reachable leader the read gets the disk's 503. It returns false when the
// request was answered.
func (s *Server) servesReads(c *gin.Context) bool {
	if !s.diskFailed() || c.Query("stale") == "true" {
		return true
	}
	if s.cfg.Node.IsLeader() || !s.proxyToLeader(c) {
		abortError(c, http.StatusServiceUnavailable, CodeDiskFailed, msgDiskFailed)
	}
	return false
}
