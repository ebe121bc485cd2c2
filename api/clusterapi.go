package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

func (s *Server) clusterStatus(c *gin.Context) {
	c.JSON(http.StatusOK, s.clusterStatusWithHealth(c))
}

func (s *Server) joinCluster(c *gin.Context) {
	var req cluster.JoinRequest
	if !s.decode(c, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := checkID("id", req.ID, true); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if p, ok := caller(c); ok && p.Scope == ScopeMember {
		// A member token only updates its own node's record.
		if req.ID != p.Subject {
			abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("id: a member token of %s cannot register %s", p.Subject, req.ID))
			return
		}
		req.RegisterOnly = true
	}
	if err := s.cfg.Node.Join(c.Request.Context(), req); err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"joined": req.ID})
}

func (s *Server) removeMember(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		abortError(c, http.StatusBadRequest, CodeInvalidID, "invalid member id")
		return
	}
	if err := s.cfg.Node.Remove(c.Request.Context(), id); err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"removed": id})
}

// StateHash is the answer of GET /v1/cluster/state-hash.
type StateHash struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// stateHash reports the hash of this node's FSM state, so that tests and
// the chaos checker can prove replicas converged. With ?snapshot=true it
// streams this node's own state in snapshot format instead (GET
// /v1/cluster/snapshot is the leader's), so that replicas whose hashes
// disagree can be compared record by record (fsm.SnapshotDifference).
func (s *Server) stateHash(c *gin.Context) {
	if c.Query("snapshot") == "true" {
		c.Header("Content-Type", "application/octet-stream")
		c.Status(http.StatusOK)
		if _, err := s.cfg.Node.FSM().WriteSnapshotAt(c.Writer); err != nil {
			// The status is sent; the stream's missing CRC trailer tells.
			s.log.Error("writing the local state failed", "error", err)
		}
		return
	}
	idx, sum, err := s.cfg.Node.FSM().Hash()
	if err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, StateHash{NodeID: s.cfg.Node.ID(), AppliedIndex: idx, Hash: sum})
}

// transferLeadership hands leadership to the member named in the body
// ({"to": "n2"}) or to any voter.
func (s *Server) transferLeadership(c *gin.Context) {
	var req struct {
		To string `json:"to,omitempty"`
	}
	if body := c.MustGet(ctxBody).([]byte); len(body) > 0 && !s.decode(c, &req) {
		return
	}
	if err := checkID("to", req.To, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if req.To == s.cfg.Node.ID() {
		abortError(c, http.StatusConflict, CodeConflict, fmt.Sprintf("to: %s is already the leader", req.To))
		return
	}
	if err := s.cfg.Node.TransferLeadershipTo(req.To); err != nil {
		if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, cluster.ErrNotLeader) {
			abortErr(c, err)
			return
		}
		// Raft refuses a transfer it cannot make (a single voter, a
		// transfer already running): a conflict with the cluster's state.
		abortError(c, http.StatusConflict, CodeConflict, "leadership transfer: "+err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"transferred_from": s.cfg.Node.ID(), "to": req.To})
}

// Backup and restore (docs/operations.md). The routes are relative to /v1;
// snapshotPath matches their full paths, which stream and so are exempt
// from the body limit and the request timeout.
const (
	pathSnapshot = "/cluster/snapshot"
	pathRestore  = "/cluster/restore"
	// maxRestoreBytes bounds a restore upload (the body limit of every
	// other request is far too small for a backup).
	maxRestoreBytes = 16 << 30
	// snapshotTimeout bounds one backup or restore.
	snapshotTimeout = 30 * time.Minute
)

// Snapshotter is the part of the cluster node that backs up and restores
// the state; a Cluster without it answers 501 on these routes.
type Snapshotter interface {
	Backup(ctx context.Context, w io.Writer) (cluster.BackupInfo, error)
	Restore(ctx context.Context, r io.Reader, force bool) (cluster.RestoreInfo, error)
}

var _ Snapshotter = (*cluster.Node)(nil)

func (s *Server) snapshotter(c *gin.Context) (Snapshotter, bool) {
	sn, ok := s.cfg.Node.(Snapshotter)
	if !ok {
		abortError(c, http.StatusNotImplemented, CodeInternal, "this node cannot back up or restore")
	}
	return sn, ok
}

func snapshotPath(p string) bool { return p == "/v1"+pathSnapshot || p == "/v1"+pathRestore }

// Headers and trailers of a backup download.
const (
	HeaderSnapshotIndex = "X-Tdf-Snapshot-Index"
	TrailerSnapshotHash = "X-Tdf-Snapshot-Sha256"
	TrailerSnapshotSize = "X-Tdf-Snapshot-Bytes"
)

// saveSnapshot streams a consistent backup of the state from the leader.
// The state hash (the SHA-256 of the stream) and the size follow as HTTP
// trailers, since they are known only at the end; the stream carries its
// own CRC-32C trailer too.
func (s *Server) saveSnapshot(c *gin.Context) {
	sn, ok := s.snapshotter(c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), snapshotTimeout)
	defer cancel()
	if err := s.cfg.Node.ConsistentRead(ctx); err != nil {
		abortErr(c, err)
		return
	}
	c.Header("Content-Type", "application/octet-stream")
	c.Header("Trailer", TrailerSnapshotHash+", "+TrailerSnapshotSize)
	c.Header(HeaderSnapshotIndex, strconv.FormatUint(s.cfg.Node.FSM().AppliedIndex(), 10))
	c.Status(http.StatusOK)
	info, err := sn.Backup(ctx, c.Writer)
	if err != nil {
		// The status is sent; a missing trailer tells the client the
		// stream is incomplete.
		s.log.Error("backup failed", "error", err)
		return
	}
	c.Writer.Header().Set(TrailerSnapshotHash, info.Hash)
	c.Writer.Header().Set(TrailerSnapshotSize, strconv.FormatInt(info.Bytes, 10))
}

// restoreSnapshot replaces the state of a fresh cluster with an uploaded
// backup. It is not forwarded (the upload may be large): a follower
// answers 409 naming the leader's URL.
func (s *Server) restoreSnapshot(c *gin.Context) {
	sn, ok := s.snapshotter(c)
	if !ok {
		return
	}
	force, err := strconv.ParseBool(cmp.Or(c.Query("force"), "false"))
	if err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("force: %q is not a boolean", c.Query("force")))
		return
	}
	if !s.cfg.Node.IsLeader() {
		_, url, _ := s.cfg.Node.LeaderAPI()
		abortError(c, http.StatusConflict, CodeNotLeader, fmt.Sprintf("restore must be sent to the leader (%s)", cmp.Or(url, "unknown right now; retry")))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), snapshotTimeout)
	defer cancel()
	body := http.MaxBytesReader(c.Writer, c.Request.Body, maxRestoreBytes)
	info, err := sn.Restore(ctx, body, force)
	switch {
	case errors.Is(err, cluster.ErrNotEmpty):
		abortError(c, http.StatusConflict, CodeConflict, err.Error())
		return
	case err != nil:
		abortErr(c, err)
		return
	}
	if info.RestoredHash != info.Backup.Hash {
		abortError(c, http.StatusInternalServerError, CodeInternal, fmt.Sprintf("restored state hash %s differs from the backup's %s", info.RestoredHash, info.Backup.Hash))
		return
	}
	c.JSON(http.StatusOK, RestoreAnswer{RestoreInfo: info, Unsealable: s.unsealReport()})
}
