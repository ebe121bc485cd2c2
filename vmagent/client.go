package vmagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one call to the agent when Options.Timeout is zero
// (the old control plane's agent request timeout).
const DefaultTimeout = 30 * time.Second

// maxAnswerBytes bounds how much of an answer the client reads.
const maxAnswerBytes = 1 << 20

// TokenSource signs the management JWT for one call: RS256, aud and type
// "node-management", node = nodeID, workspace = workspaceID ("" on node
// routes), sub = userID (VMAGENT.md). tdf implements it with the cluster key.
type TokenSource interface {
	ManagementToken(nodeID, workspaceID, userID string) (string, error)
}

// Options configure a Client.
type Options struct {
	// Timeout bounds each call, answer included. Zero means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient sends the calls. Nil means a client of its own; its
	// Timeout should be zero or above Timeout.
	HTTPClient *http.Client
	// Tokens signs the management token of every orchestration call. Nil
	// sends no Authorization header (for agents that verify nothing, as a
	// simulated agent without a verifier).
	Tokens TokenSource
}

// Client drives VM agents. It is safe for concurrent use; one Client serves
// every node.
type Client struct {
	timeout time.Duration
	hc      *http.Client
	tokens  TokenSource
}

// NewClient returns a client with opts, defaults filled in.
func NewClient(opts Options) *Client {
	c := &Client{timeout: opts.Timeout, hc: opts.HTTPClient, tokens: opts.Tokens}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	return c
}

// Health asks GET /health, which the agent answers 200 without
// authentication from process start (before system provisioning ends).
func (c *Client) Health(ctx context.Context, base string) error {
	_, err := c.do(ctx, request{
		method: http.MethodGet, base: base, path: "/health",
		ok: statuses(http.StatusOK),
	})
	return err
}

// ListWorkspaces asks GET /workspaces.
func (c *Client) ListWorkspaces(ctx context.Context, base, nodeID, userID string) ([]Workspace, error) {
	if err := required("node id", nodeID); err != nil {
		return nil, err
	}
	ans, err := c.do(ctx, request{
		method: http.MethodGet, base: base, path: "/workspaces",
		nodeID: nodeID, userID: userID, auth: true,
		ok: statuses(http.StatusOK),
	})
	if err != nil {
		return nil, err
	}
	var out ListWorkspacesResponse
	if err := ans.decode(&out); err != nil {
		return nil, err
	}
	return out.Workspaces, nil
}

// CreateWorkspace asks POST /workspaces for req.WorkspaceID. Both 202 (the
// workspace is provisioning, now or still) and 200 (a replay: it already
// runs) are success; the result says which. A 409 workspace_conflict or
// workspace_not_creatable comes back as a permanent *Error
// (ErrWorkspaceConflict, ErrWorkspaceNotCreatable).
func (c *Client) CreateWorkspace(ctx context.Context, base, nodeID, userID string, req CreateWorkspaceRequest) (CreateWorkspaceResult, error) {
	if err := required("node id", nodeID); err != nil {
		return CreateWorkspaceResult{}, err
	}
	if err := required("workspace id", req.WorkspaceID); err != nil {
		return CreateWorkspaceResult{}, err
	}
	ans, err := c.do(ctx, request{
		method: http.MethodPost, base: base, path: "/workspaces",
		nodeID: nodeID, workspaceID: req.WorkspaceID, userID: userID, auth: true,
		body: req,
		ok:   statuses(http.StatusAccepted, http.StatusOK, http.StatusCreated),
	})
	if err != nil {
		return CreateWorkspaceResult{}, err
	}
	var out WorkspaceStatusResponse
	if err := ans.decode(&out); err != nil {
		return CreateWorkspaceResult{}, err
	}
	res := CreateWorkspaceResult{
		WorkspaceID: out.WorkspaceID,
		Status:      out.Status,
		Running:     ans.status == http.StatusOK,
		HTTPStatus:  ans.status,
	}
	if res.WorkspaceID == "" {
		res.WorkspaceID = req.WorkspaceID
	}
	if res.Status == "" {
		res.Status = StatusCreating
		if res.Running {
			res.Status = StatusRunning
		}
	}
	return res, nil
}

// CreateAgentSession asks POST /workspaces/{id}/agent-sessions, always with
// an Idempotency-Key so that a replay answers 201 with the existing session
// instead of 400 "session already exists". An empty idempotencyKey is
// replaced by one derived from the session id, which is as stable across
// retries.
func (c *Client) CreateAgentSession(ctx context.Context, base, nodeID, userID, workspaceID string, req CreateSessionRequest, idempotencyKey string) (Session, error) {
	if err := required("node id", nodeID); err != nil {
		return Session{}, err
	}
	if err := required("workspace id", workspaceID); err != nil {
		return Session{}, err
	}
	if err := required("session id", req.SessionID); err != nil {
		return Session{}, err
	}
	if idempotencyKey == "" {
		idempotencyKey = "session:" + req.SessionID
	}
	ans, err := c.do(ctx, request{
		method: http.MethodPost, base: base, path: "/workspaces/" + url.PathEscape(workspaceID) + "/agent-sessions",
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		idempotencyKey: idempotencyKey,
		body:           req,
		ok:             statuses(http.StatusCreated, http.StatusOK),
	})
	if err != nil {
		return Session{}, err
	}
	var out Session
	if err := ans.decode(&out); err != nil {
		return Session{}, err
	}
	return out, nil
}

// StartAgentSession asks POST /workspaces/{id}/agent-sessions/{sid}/start:
// the agent starts working on req.InitialPrompt and reports through the task
// status callback when done. 202 (started) and 200 (a replay of the same
// DeliveryID) are success.
func (c *Client) StartAgentSession(ctx context.Context, base, nodeID, userID, workspaceID, sessionID string, req StartSessionRequest) error {
	if err := required("node id", nodeID); err != nil {
		return err
	}
	if err := required("workspace id", workspaceID); err != nil {
		return err
	}
	if err := required("session id", sessionID); err != nil {
		return err
	}
	if err := checkDelivery(req.DeliveryID, &req.ProtocolVersion); err != nil {
		return err
	}
	return c.deliverPrompt(ctx, base, nodeID, userID, workspaceID, sessionID, "start", req)
}

// checkDelivery refuses a malformed deliveryId and stamps the protocol
// version a delivery needs.
func checkDelivery(deliveryID string, version *int) error {
	if deliveryID == "" {
		return nil
	}
	if *version == 0 {
		*version = ExecutionProtocolVersion
	}
	if !ValidDeliveryID(deliveryID) {
		return fmt.Errorf("%w: deliveryId %q is not 1–%d characters of letters, digits and ._:-", ErrInvalidRequest, deliveryID, MaxDeliveryIDLength)
	}
	return nil
}

// deliverPrompt posts a prompt delivery (a session's start or a follow-up
// prompt); a replay of the same delivery answers 200.
func (c *Client) deliverPrompt(ctx context.Context, base, nodeID, userID, workspaceID, sessionID, action string, body any) error {
	_, err := c.do(ctx, request{
		method: http.MethodPost,
		base:   base,
		path:   "/workspaces/" + url.PathEscape(workspaceID) + "/agent-sessions/" + url.PathEscape(sessionID) + "/" + action,
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		body: body,
		ok:   statuses(http.StatusAccepted, http.StatusOK),
	})
	return err
}

// StopAgentSession asks POST /workspaces/{id}/agent-sessions/{sid}/stop;
// stopping a stopped session succeeds.
func (c *Client) StopAgentSession(ctx context.Context, base, nodeID, userID, workspaceID, sessionID string) (Session, error) {
	if err := required("node id", nodeID); err != nil {
		return Session{}, err
	}
	if err := required("workspace id", workspaceID); err != nil {
		return Session{}, err
	}
	if err := required("session id", sessionID); err != nil {
		return Session{}, err
	}
	ans, err := c.do(ctx, request{
		method: http.MethodPost,
		base:   base,
		path:   "/workspaces/" + url.PathEscape(workspaceID) + "/agent-sessions/" + url.PathEscape(sessionID) + "/stop",
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		ok: statuses(http.StatusOK),
	})
	if err != nil {
		return Session{}, err
	}
	var out Session
	if err := ans.decode(&out); err != nil {
		return Session{}, err
	}
	return out, nil
}

// StopWorkspace asks POST /workspaces/{id}/stop. The agent answers a second
// stop with 409 invalid_transition; that is reported as success, since the
// only states a stop cannot leave are the stopped ones.
func (c *Client) StopWorkspace(ctx context.Context, base, nodeID, userID, workspaceID string) error {
	if err := required("node id", nodeID); err != nil {
		return err
	}
	if err := required("workspace id", workspaceID); err != nil {
		return err
	}
	_, err := c.do(ctx, request{
		method: http.MethodPost, base: base, path: "/workspaces/" + url.PathEscape(workspaceID) + "/stop",
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		ok: statuses(http.StatusOK),
	})
	if errors.Is(err, ErrInvalidTransition) {
		return nil
	}
	return err
}

// DeleteWorkspace asks DELETE /workspaces/{id}, which the agent answers 200
// whether or not the workspace exists.
func (c *Client) DeleteWorkspace(ctx context.Context, base, nodeID, userID, workspaceID string) error {
	if err := required("node id", nodeID); err != nil {
		return err
	}
	if err := required("workspace id", workspaceID); err != nil {
		return err
	}
	_, err := c.do(ctx, request{
		method: http.MethodDelete, base: base, path: "/workspaces/" + url.PathEscape(workspaceID),
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		ok: statuses(http.StatusOK, http.StatusNoContent),
	})
	return err
}

// request is one call to the agent.
type request struct {
	method, base, path string
	// nodeID and workspaceID become headers and token claims; userID the
	// token's subject.
	nodeID, workspaceID, userID string
	auth                        bool
	idempotencyKey              string
	body                        any
	ok                          func(int) bool
}

// answer is a successful answer.
type answer struct {
	op     string
	status int
	body   []byte
}

func (a answer) decode(v any) error {
	if len(bytes.TrimSpace(a.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("vmagent: %s: decode %d answer: %w", a.op, a.status, err)
	}
	return nil
}

func statuses(codes ...int) func(int) bool {
	return func(s int) bool {
		for _, c := range codes {
			if s == c {
				return true
			}
		}
		return false
	}
}

func required(what, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalidRequest, what)
	}
	return nil
}

func (c *Client) do(ctx context.Context, r request) (answer, error) {
	op := r.method + " " + r.path
	endpoint, err := joinURL(r.base, r.path)
	if err != nil {
		return answer{}, fmt.Errorf("vmagent: %s: %w", op, err)
	}
	var body io.Reader
	if r.body != nil {
		buf, err := json.Marshal(r.body)
		if err != nil {
			return answer{}, fmt.Errorf("vmagent: %s: %w: encode body: %v", op, ErrInvalidRequest, err)
		}
		body = bytes.NewReader(buf)
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, endpoint, body)
	if err != nil {
		return answer{}, fmt.Errorf("vmagent: %s: %w: %v", op, ErrInvalidRequest, err)
	}
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.nodeID != "" {
		req.Header.Set(HeaderNodeID, r.nodeID)
	}
	if r.workspaceID != "" {
		req.Header.Set(HeaderWorkspaceID, r.workspaceID)
	}
	if r.idempotencyKey != "" {
		req.Header.Set(HeaderIdempotencyKey, r.idempotencyKey)
	}
	if r.auth && c.tokens != nil {
		tok, err := c.tokens.ManagementToken(r.nodeID, r.workspaceID, r.userID)
		if err != nil {
			return answer{}, fmt.Errorf("vmagent: %s: management token: %w", op, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("vmagent: %s: %w", op, err)
	}
	defer resp.Body.Close()
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return answer{}, fmt.Errorf("vmagent: %s: read %d answer: %w", op, resp.StatusCode, err)
	}
	if !r.ok(resp.StatusCode) {
		return answer{}, parseError(op, resp.StatusCode, buf)
	}
	return answer{op: op, status: resp.StatusCode, body: buf}, nil
}

// joinURL appends path to the agent's base URL, which must be absolute
// http(s).
func joinURL(base, path string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return "", fmt.Errorf("%w: base url: %v", ErrInvalidRequest, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: base url %q is not an absolute http(s) url", ErrInvalidRequest, base)
	}
	return strings.TrimRight(u.String(), "/") + path, nil
}

// parseError turns a non-success answer into *Error. The agent answers
// {"error": "<msg>"}, or {"error": "<code>", "message": "<msg>"}, or for a
// refused prompt delivery {"status": "conflict"|"not_ready"}.
func parseError(op string, status int, body []byte) *Error {
	e := &Error{Op: op, Status: status}
	var b struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		e.Message = truncate(strings.TrimSpace(string(body)), 512)
		return e
	}
	switch {
	case b.Message != "":
		e.Code, e.Message = b.Error, b.Message
	case isCode(b.Error):
		e.Code = b.Error
	default:
		e.Message = b.Error
	}
	if e.Code == "" && e.Message == "" && isCode(b.Status) {
		e.Code = b.Status
	}
	return e
}

// isCode reports whether s looks like a machine code: lower-case letters,
// digits and underscores.
func isCode(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// PromptReceipt asks GET /workspaces/{id}/agent-sessions/{sid}/prompt-receipts/{deliveryId}:
// what became of the prompt a start (or prompt) with that deliveryId
// delivered. The agent keeps receipts durably; an unknown delivery answers
// 404 with state not_found, returned here as a receipt, not an error.
func (c *Client) PromptReceipt(ctx context.Context, base, nodeID, userID, workspaceID, sessionID, deliveryID string) (PromptReceipt, error) {
	for what, v := range map[string]string{"node id": nodeID, "workspace id": workspaceID, "session id": sessionID, "delivery id": deliveryID} {
		if err := required(what, v); err != nil {
			return PromptReceipt{}, err
		}
	}
	ans, err := c.do(ctx, request{
		method: http.MethodGet,
		base:   base,
		path: "/workspaces/" + url.PathEscape(workspaceID) + "/agent-sessions/" + url.PathEscape(sessionID) +
			"/prompt-receipts/" + url.PathEscape(deliveryID),
		nodeID: nodeID, workspaceID: workspaceID, userID: userID, auth: true,
		ok: statuses(http.StatusOK, http.StatusNotFound),
	})
	if err != nil {
		return PromptReceipt{}, err
	}
	out := PromptReceipt{DeliveryID: deliveryID, State: ReceiptNotFound}
	if ans.status == http.StatusOK {
		if err := ans.decode(&out); err != nil {
			return PromptReceipt{}, err
		}
	}
	return out, nil
}
