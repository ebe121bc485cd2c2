package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
)

const (
	headerHops        = "X-Tdf-Hops"
	headerForwardedBy = "X-Tdf-Forwarded-By"
	headerForwardedTo = "X-Tdf-Forwarded-To"
	// maxHops stops a request bouncing between nodes whose views of the
	// leader disagree during an election.
	maxHops = 3
	ctxBody = "tdf.body"
	// ctxHold overrides the hold timeout for one route (callbacks).
	ctxHold = "tdf.hold"
)

// hopByHop headers are not forwarded (RFC 9110 §7.6.1).
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// onLeader runs the rest of the chain on the leader and forwards the
// request there from any other node. It buffers the (size-limited) body so
// a request can be re-sent after an unknown outcome.
func (s *Server) onLeader(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	c.Set(ctxBody, body)
	c.Writer = &indexWriter{ResponseWriter: c.Writer, c: c, s: s}
	if s.cfg.Node.IsLeader() || !s.proxyToLeader(c) {
		// A leader just elected may not have applied every earlier entry
		// yet; what the handler reads (a task, the signing keys) must be.
		s.cfg.Node.WaitLeaderReady(c.Request.Context(), s.hold(c))
		c.Next()
	}
}

// holdLonger gives the rest of the chain the callback hold timeout.
func (s *Server) holdLonger(c *gin.Context) {
	c.Set(ctxHold, s.cfg.CallbackHoldTimeout)
	c.Next()
}

// hold is how long this request waits for a leader.
func (s *Server) hold(c *gin.Context) time.Duration {
	if d := c.GetDuration(ctxHold); d > 0 {
		return d
	}
	return s.cfg.HoldTimeout
}

func readBody(c *gin.Context) ([]byte, bool) {
	if c.Request.Body == nil {
		return nil, true
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abortError(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
			return nil, false
		}
		abortError(c, http.StatusBadRequest, CodeInvalidJSON, "cannot read request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// leaderURL waits, up to the hold timeout, until a leader with a known API
// address exists. self is true when that leader is this node.
func (s *Server) leaderURL(ctx context.Context, hold time.Duration) (url string, self bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	for {
		if id, u, ok := s.cfg.Node.LeaderAPI(); ok {
			if id == s.cfg.Node.ID() {
				if s.cfg.Node.IsLeader() {
					return u, true, nil
				}
			} else {
				return u, false, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", false, cluster.ErrNoLeader
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// proxyToLeader sends the request to the leader and copies its answer
// back, or answers 503 if no leader turns up within the hold timeout. It
// returns false, having written nothing, when this node itself is (or has
// just become) the leader: the caller then handles the request locally.
// Transport failures are retried against whoever leads until the hold
// timeout: every write we forward is idempotent (submits carry a request
// id), so a re-send cannot duplicate an effect.
func (s *Server) proxyToLeader(c *gin.Context) bool {
	hops, _ := strconv.Atoi(c.GetHeader(headerHops))
	if hops >= maxHops {
		abortError(c, http.StatusServiceUnavailable, CodeNoLeader, "request bounced between nodes without reaching a leader; retry")
		return true
	}
	body, _ := c.Get(ctxBody)
	payload, _ := body.([]byte)
	hold := s.hold(c)
	deadline := time.Now().Add(hold)
	var lastErr error
	for time.Now().Before(deadline) {
		url, self, err := s.leaderURL(c.Request.Context(), time.Until(deadline))
		if err != nil {
			break
		}
		if self {
			return false
		}
		resp, err := s.send(c, url, payload, hops+1)
		// A 503 means the node we took for the leader had none either (it
		// was deposed or cut off): ask whoever leads now, while the hold
		// lasts. Writes we forward are idempotent, so a re-send is safe.
		if err == nil && resp.StatusCode == http.StatusServiceUnavailable && time.Until(deadline) > 100*time.Millisecond {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			err = fmt.Errorf("%s answered 503", url)
		}
		if err == nil {
			defer resp.Body.Close()
			s.cfg.Metrics.countForward(c.Request.Method, resp.StatusCode)
			copyResponse(c, resp)
			return true
		}
		lastErr = err
		if c.Request.Context().Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	msg := "no leader is available"
	if lastErr != nil {
		msg = fmt.Sprintf("forwarding to the leader failed: %v", lastErr)
	}
	abortError(c, http.StatusServiceUnavailable, CodeNoLeader, msg)
	return true
}

func (s *Server) send(c *gin.Context, base string, body []byte, hops int) (*http.Response, error) {
	target := strings.TrimRight(base, "/") + c.Request.URL.RequestURI()
	req, err := http.NewRequestWithContext(c.Request.Context(), c.Request.Method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Request.Header {
		if !hopByHop[k] {
			req.Header[k] = vs
		}
	}
	req.Header.Set(headerHops, strconv.Itoa(hops))
	req.Header.Set(headerForwardedBy, s.cfg.Node.ID())
	return s.cfg.Client.Do(req)
}

func copyResponse(c *gin.Context, resp *http.Response) {
	for k, vs := range resp.Header {
		if hopByHop[k] || k == "X-Tdf-Node" {
			continue
		}
		// Replace, not add: the leader's X-Tdf-Leader must not double ours.
		c.Writer.Header()[k] = vs
	}
	c.Header(headerForwardedTo, resp.Header.Get("X-Tdf-Node"))
	c.Status(resp.StatusCode)
	_, _ = io.Copy(c.Writer, resp.Body)
	c.Abort()
}
