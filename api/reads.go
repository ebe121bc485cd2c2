package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
)

// Reads that are never older than the caller's own writes.
//
// Every write answers with X-Tdf-Index, the raft index it was applied at.
// A read with ?index=N is answered once the serving node's state reflects
// N (waiting at most ?wait=, default the hold timeout; past that it goes to
// the leader, which applied N before it acknowledged the write). A read
// without an index is served locally only while the node is in contact
// with a leader and caught up, within Config.MaxStale, to what it knows is
// committed; otherwise the leader answers it. ?stale=true serves locally in
// any case and says how stale (X-Tdf-Last-Contact, X-Tdf-Known-Leader).
// ?consistent=true is answered by the leader after it confirmed leadership.
// GET /v1/tasks/{id}?index=N&wait=D is a blocking query (blocking.go).

// CodeNotReady: /readyz while the node has not caught up (or has no leader
// ready yet).
const CodeNotReady = "not_ready"

const (
	headerIndex       = "X-Tdf-Index"
	headerLastContact = "X-Tdf-Last-Contact"
	headerKnownLeader = "X-Tdf-Known-Leader"
	// ctxIndex holds the index a write was applied at.
	ctxIndex = "tdf.index"
	// maxWait bounds ?wait= (under the HTTP server's write timeout).
	maxWait = 60 * time.Second
	// defaultMaxStale is Config.MaxStale's default: heartbeats arrive every
	// tenth of the heartbeat timeout, so a node in contact is well within it.
	defaultMaxStale = 250 * time.Millisecond
)

// freshness is what the read path needs of a cluster node beyond Cluster;
// a Cluster without it (a test fake) serves every read locally.
type freshness interface {
	Ready() (bool, string)
	LastContact() time.Duration
	CommitIndex() uint64
	CaughtUpTo(index uint64) bool
	WaitCaughtUp(ctx context.Context, index uint64) error
}

// readOpts are a read's consistency parameters.
type readOpts struct {
	consistent, stale bool
	index             uint64
	wait              time.Duration
	waitSet           bool
}

func parseReadOpts(c *gin.Context) (readOpts, error) {
	var o readOpts
	var err error
	if v := c.Query("consistent"); v != "" {
		if o.consistent, err = strconv.ParseBool(v); err != nil {
			return o, fmt.Errorf("consistent: %q is not a boolean", v)
		}
	}
	if v := c.Query("stale"); v != "" {
		if o.stale, err = strconv.ParseBool(v); err != nil {
			return o, fmt.Errorf("stale: %q is not a boolean", v)
		}
	}
	if v := c.Query("index"); v != "" {
		if o.index, err = strconv.ParseUint(v, 10, 64); err != nil {
			return o, fmt.Errorf("index: %q is not a raft index (a non-negative integer, as in X-Tdf-Index)", v)
		}
	}
	if o.wait, o.waitSet, err = parseWait(c.Query("wait")); err != nil {
		return o, err
	}
	return o, nil
}

// parseWait reads ?wait=: a Go duration ("30s") or whole seconds ("30").
func parseWait(v string) (time.Duration, bool, error) {
	if v == "" {
		return 0, false, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, false, fmt.Errorf("wait: %q is not a duration such as 30s", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > maxWait {
		return 0, false, fmt.Errorf("wait: %s must be between 0 and %s", v, maxWait)
	}
	return d, true, nil
}

// blockingWait is how much longer than usual a request may take: its
// ?wait= (the request timeout is stretched by it).
func blockingWait(c *gin.Context) time.Duration {
	d, _, _ := parseWait(c.Query("wait"))
	return d
}

// readable decides where a read is answered (see the top of this file).
func (s *Server) readable(c *gin.Context) {
	if !s.servesReads(c) {
		return
	}
	o, err := parseReadOpts(c)
	if err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	f, ok := s.cfg.Node.(freshness)
	switch {
	case o.consistent:
		s.consistentRead(c)
	case !ok:
		s.serveLocal(c)
	case o.stale:
		s.staleHeaders(c, f)
		s.serveLocal(c)
	case o.index > 0 && o.waitSet && c.FullPath() == "/v1/tasks/:id":
		s.blockingTaskRead(c, f, o)
	case o.index > 0:
		s.indexRead(c, f, o)
	case s.fresh(c, f):
		s.serveLocal(c)
	default:
		s.onLeaderRead(c)
	}
}

// serveLocal runs the handler here, stamping the index the state is at.
func (s *Server) serveLocal(c *gin.Context) {
	c.Header(headerIndex, strconv.FormatUint(s.cfg.Node.FSM().AppliedIndex(), 10))
	c.Next()
}

// onLeaderRead sends the read to the leader, or serves it here if this
// node has become the leader meanwhile.
func (s *Server) onLeaderRead(c *gin.Context) {
	if !s.proxyToLeader(c) {
		s.cfg.Node.WaitLeaderReady(c.Request.Context(), s.hold(c))
		s.serveLocal(c)
	}
}

// staleHeaders says how fresh a local answer is.
func (s *Server) staleHeaders(c *gin.Context, f freshness) {
	lc := f.LastContact()
	ms := int64(-1)
	if lc >= 0 {
		ms = lc.Milliseconds()
	}
	id, _ := s.cfg.Node.Leader()
	c.Header(headerLastContact, strconv.FormatInt(ms, 10))
	c.Header(headerKnownLeader, strconv.FormatBool(id != ""))
}

// fresh reports whether this node may answer a read without an index: it
// is the ready leader, or a ready follower that heard from the leader
// within MaxStale and has applied (waiting at most MaxStale) everything it
// knows to be committed.
func (s *Server) fresh(c *gin.Context, f freshness) bool {
	if s.cfg.Node.IsLeader() {
		ok, _ := f.Ready()
		return ok
	}
	if ok, _ := f.Ready(); !ok {
		return false
	}
	bound := s.maxStale()
	if lc := f.LastContact(); lc < 0 || lc > bound {
		return false
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), bound)
	defer cancel()
	return f.WaitCaughtUp(ctx, f.CommitIndex()) == nil
}

func (s *Server) maxStale() time.Duration {
	if s.cfg.MaxStale > 0 {
		return s.cfg.MaxStale
	}
	return defaultMaxStale
}

// indexRead answers once this node has applied the index, or sends the
// read to the leader if it does not within the wait.
func (s *Server) indexRead(c *gin.Context, f freshness, o readOpts) {
	wait := s.cfg.HoldTimeout
	if o.waitSet {
		wait = o.wait
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), wait)
	err := f.WaitCaughtUp(ctx, o.index)
	cancel()
	if err == nil {
		s.serveLocal(c)
		return
	}
	if c.Request.Context().Err() != nil {
		abortErr(c, c.Request.Context().Err())
		return
	}
	s.onLeaderRead(c)
}

// consistentRead is answered by the leader after it has confirmed
// leadership and applied everything committed before.
func (s *Server) consistentRead(c *gin.Context) {
	if s.cfg.Node.IsLeader() {
		err := s.cfg.Node.ConsistentRead(c.Request.Context())
		if err == nil {
			s.serveLocal(c)
			return
		}
		if !errors.Is(err, cluster.ErrNotLeader) {
			abortErr(c, err)
			return
		}
	}
	if !s.proxyToLeader(c) {
		if err := s.cfg.Node.ConsistentRead(c.Request.Context()); err != nil {
			abortErr(c, err)
			return
		}
		s.serveLocal(c)
	}
}

// noteIndex records the index a write was applied at, for X-Tdf-Index.
func noteIndex(c *gin.Context, index uint64) {
	if index > c.GetUint64(ctxIndex) {
		c.Set(ctxIndex, index)
	}
}

// indexWriter stamps X-Tdf-Index on a write's answer as its header goes
// out: the index the handler applied at, else the state's (an upper
// bound). An answer forwarded from the leader keeps the leader's.
type indexWriter struct {
	gin.ResponseWriter
	c *gin.Context
	s *Server
}

func (w *indexWriter) stamp() {
	h := w.ResponseWriter.Header()
	if h.Get(headerIndex) != "" {
		return
	}
	idx := w.c.GetUint64(ctxIndex)
	if idx == 0 {
		idx = w.s.cfg.Node.FSM().AppliedIndex()
	}
	h.Set(headerIndex, strconv.FormatUint(idx, 10))
}

func (w *indexWriter) WriteHeader(code int) {
	w.stamp()
	w.ResponseWriter.WriteHeader(code)
}

func (w *indexWriter) WriteHeaderNow() {
	w.stamp()
	w.ResponseWriter.WriteHeaderNow()
}

func (w *indexWriter) Write(b []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(b)
}

func (w *indexWriter) WriteString(v string) (int, error) {
	w.stamp()
	return w.ResponseWriter.WriteString(v)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// contextWithWait bounds a wait within the request.
func contextWithWait(c *gin.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), wait)
}
