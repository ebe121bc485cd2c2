package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names an error by a stable code and explains it.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeInvalidJSON     = "invalid_json"
	CodeInvalidField    = "invalid_field"
	CodeInvalidID       = "invalid_id"
	CodeBodyTooLarge    = "body_too_large"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeInvalidTrans    = "invalid_transition"
	CodeIdempotencyKey  = "idempotency_key_reused"
	CodeNoLeader        = "no_leader"
	CodeNotLeader       = "not_leader"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
	CodeMethodNotAllow  = "method_not_allowed"
	CodeForwardingFault = "forwarding_failed"
	CodeUnauthorized    = "unauthorized"
	CodeForbidden       = "forbidden"
	CodeRateLimited     = "rate_limited"
	CodeHeaderTooLarge  = "header_too_large"
	CodeDiskFailed      = "disk_unavailable"
)

// msgDiskFailed is every client's answer while a node cannot write its log.
const msgDiskFailed = "this node cannot write to its disk; retry with the same Idempotency-Key (another node takes over as leader)"

func abortError(c *gin.Context, status int, code, msg string) {
	if status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// abortErr maps a domain or cluster error onto an HTTP answer.
func abortErr(c *gin.Context, err error) {
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		abortError(c, http.StatusNotFound, CodeNotFound, err.Error())
	case errors.Is(err, fsm.ErrInvalidTransition):
		abortError(c, http.StatusConflict, CodeInvalidTrans, err.Error())
	case errors.Is(err, fsm.ErrIdempotencyMismatch):
		abortError(c, http.StatusUnprocessableEntity, CodeIdempotencyKey, err.Error())
	case errors.Is(err, fsm.ErrExists):
		abortError(c, http.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, fsm.ErrInvalid):
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrUnknownOutcome):
		abortError(c, http.StatusServiceUnavailable, CodeNoLeader, "no leader is available; retry with the same Idempotency-Key")
	case errors.Is(err, cluster.ErrDiskFailed):
		// The store's error names the data dir: logged, never sent.
		_ = c.Error(err)
		abortError(c, http.StatusServiceUnavailable, CodeDiskFailed, msgDiskFailed)
	case errors.Is(err, cluster.ErrShutdown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		abortError(c, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
	default:
		// An unexpected error may carry server paths (a store's error names
		// its file): the client gets a generic message, the log the error
		// (Server.common logs c.Errors of every 5xx answer).
		_ = c.Error(err)
		abortError(c, http.StatusInternalServerError, CodeInternal, "internal error; the node's log has the details")
	}
}
