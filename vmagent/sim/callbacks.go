package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// CallbackKind names a callback.
type CallbackKind string

// The callbacks the agent sends.
const (
	KindNodeReady          CallbackKind = "node_ready"
	KindHeartbeat          CallbackKind = "heartbeat"
	KindWorkspaceReady     CallbackKind = "workspace_ready"
	KindProvisioningFailed CallbackKind = "provisioning_failed"
	KindTaskStatus         CallbackKind = "task_status"
	KindMessages           CallbackKind = "messages"
)

// Outcome is what became of one callback attempt, or of a whole delivery.
type Outcome string

// Outcomes of one request to one URL.
const (
	// OutcomeDelivered: a 2xx answer.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeRejected: a 3xx or 4xx answer the policy does not retry.
	OutcomeRejected Outcome = "rejected"
	// OutcomeError: no answer (transport error: the next URL is tried), a
	// 5xx answer, or a 4xx the policy retries (408 and 429 for
	// provisioning-failed).
	OutcomeError Outcome = "error"
)

// Outcomes of a whole delivery, recorded without a URL.
const (
	// OutcomePending: a workspace ready callback's retries ran out; it is
	// re-sent after each successful heartbeat.
	OutcomePending Outcome = "pending"
	// OutcomeGaveUp: a provisioning-failed callback's retries ran out.
	OutcomeGaveUp Outcome = "gave_up"
	// OutcomeDropped: not sent, by a fault (DropNodeReady,
	// DropTaskStatus, or the draw of DropNodeReadyRate,
	// DropTaskStatusRate); Error names the fault.
	OutcomeDropped Outcome = "dropped"
	// OutcomeSkipped: not sent, for a reason the real agent has too (no
	// control-plane URL, no callback token, no task context, the session
	// or workspace stopped meanwhile); Error says which.
	OutcomeSkipped Outcome = "skipped"
)

// CallbackRecord is one entry of the callback log: one request to one URL,
// or (URL empty) the outcome of a whole delivery.
type CallbackRecord struct {
	Seq         int64        `json:"seq"`
	Time        time.Time    `json:"time"`
	Kind        CallbackKind `json:"kind"`
	NodeID      string       `json:"node_id"`
	WorkspaceID string       `json:"workspace_id,omitempty"`
	ProjectID   string       `json:"project_id,omitempty"`
	TaskID      string       `json:"task_id,omitempty"`
	// URL is the full URL requested; empty on delivery outcomes.
	URL string `json:"url,omitempty"`
	// Attempt numbers the retries of one delivery from 1; the URLs tried
	// within one attempt (failover) share its number.
	Attempt int `json:"attempt,omitempty"`
	// Duplicate marks the deliberate second copy of Faults.DuplicateCallbacks.
	Duplicate bool `json:"duplicate,omitempty"`
	// Resend marks a pending workspace ready re-sent after a heartbeat.
	Resend     bool            `json:"resend,omitempty"`
	StatusCode int             `json:"status_code,omitempty"`
	Error      string          `json:"error,omitempty"`
	Outcome    Outcome         `json:"outcome"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// message is one callback to deliver.
type message struct {
	kind                           CallbackKind
	path                           string
	token                          string
	body                           []byte
	workspaceID, projectID, taskID string
	// retryLimits: 408 and 429 are retried too (provisioning-failed).
	retryLimits bool
	// outbox: every answer but 400, 401 and 403 is retried (messages).
	outbox bool
}

func newMessage(kind CallbackKind, path, token string, body any) *message {
	buf, err := json.Marshal(body)
	if err != nil {
		// Every body is a plain struct of this package's making.
		panic(err)
	}
	return &message{kind: kind, path: path, token: token, body: buf}
}

// rec starts a log record for m.
func (m *message) rec(outcome Outcome) CallbackRecord {
	return CallbackRecord{
		Kind:        m.kind,
		WorkspaceID: m.workspaceID,
		ProjectID:   m.projectID,
		TaskID:      m.taskID,
		Outcome:     outcome,
	}
}

// retryable reports whether an answer (0: none) is worth another attempt.
func (m *message) retryable(status int) bool {
	switch {
	case m.outbox:
		return status != http.StatusBadRequest && status != http.StatusUnauthorized && status != http.StatusForbidden
	case status == 0, status >= 500:
		return true
	case m.retryLimits && (status == http.StatusRequestTimeout || status == http.StatusTooManyRequests):
		return true
	}
	return false
}

// delivered reports whether an answer is a 2xx.
func delivered(status int) bool { return status >= 200 && status < 300 }

// post makes one attempt: it sends m to the control-plane URL. It returns
// the answer's status and body, or 0 when there was no answer.
func (a *Agent) post(ctx context.Context, m *message, attempt int, dup, resend bool) (int, []byte) {
	u := strings.TrimRight(a.cfg.ControlPlaneURL, "/") + m.path
	status, answer, err := a.send(ctx, u, m)
	r := m.rec(OutcomeError)
	r.URL, r.Attempt, r.Duplicate, r.Resend, r.Body = u, attempt, dup, resend, m.body
	if err != nil {
		r.Error = err.Error()
		a.record(r)
		return 0, nil
	}
	r.StatusCode = status
	switch {
	case delivered(status):
		r.Outcome = OutcomeDelivered
	case !m.retryable(status):
		r.Outcome = OutcomeRejected
	}
	if !delivered(status) {
		r.Error = truncate(strings.TrimSpace(string(answer)), 256)
	}
	a.record(r)
	return status, answer
}

// send makes one request to one URL.
func (a *Agent) send(ctx context.Context, u string, m *message) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(m.body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if m.token != "" {
		req.Header.Set("Authorization", "Bearer "+m.token)
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		// The status arrived; the body is only read for refreshedToken.
		return resp.StatusCode, nil, nil
	}
	return resp.StatusCode, answer, nil
}

// noControlPlane logs m as skipped when there is no URL to send it to.
func (a *Agent) noControlPlane(m *message) bool {
	if a.cfg.ControlPlaneURL != "" {
		return false
	}
	r := m.rec(OutcomeSkipped)
	r.Error = "no control-plane url"
	a.record(r)
	return true
}

// deliverOnce sends m in one attempt, the policy of node ready, heartbeats
// and task status. It returns the answer's status (0: none).
func (a *Agent) deliverOnce(ctx context.Context, m *message) (int, []byte) {
	if a.noControlPlane(m) {
		return 0, nil
	}
	status, answer := a.post(ctx, m, 1, false, false)
	if delivered(status) && a.Faults().DuplicateCallbacks && m.kind != KindHeartbeat {
		a.post(ctx, m, 1, true, false)
	}
	return status, answer
}

// deliverRetried sends m under the retry policy, beginning with attempt
// number first. It reports whether the delivery settled: a 2xx, or an
// answer not worth retrying.
func (a *Agent) deliverRetried(ctx context.Context, m *message, first int) bool {
	if a.noControlPlane(m) {
		return true
	}
	p := a.cfg.Retry
	begin := time.Now()
	delay := p.Initial
	for i := 1; i < first; i++ {
		delay = min(2*delay, p.Max)
	}
	for attempt := first; ; attempt++ {
		status, _ := a.post(ctx, m, attempt, false, false)
		if delivered(status) {
			if a.Faults().DuplicateCallbacks {
				a.post(ctx, m, attempt, true, false)
			}
			return true
		}
		if !m.retryable(status) {
			return true
		}
		if ctx.Err() != nil || attempt >= p.MaxAttempts || time.Since(begin)+delay > p.MaxElapsed {
			return false
		}
		wait := delay
		if half := int64(delay / 2); half > 0 {
			wait += time.Duration(rand.Int64N(half + 1))
		}
		if !sleep(ctx, wait) {
			return false
		}
		delay = min(2*delay, p.Max)
	}
}

// sendNodeReady is the node ready callback: once, no retry.
func (a *Agent) sendNodeReady(ctx context.Context) {
	m := newMessage(KindNodeReady, vmagent.NodeReadyPath(a.cfg.NodeID), a.NodeToken(),
		vmagent.NodeReadyRequest{AgentVersion: a.cfg.AgentVersion})
	if a.dropped(m, a.Faults()) {
		return
	}
	a.deliverOnce(ctx, m)
}

// dropped decides, once per callback, whether a fault drops m (node ready
// or task status), and if so logs it as dropped. A rate is drawn from the
// kind's seeded stream only when the boolean fault does not already drop
// the callback and the rate is above zero, so an agent without rate
// faults draws nothing.
func (a *Agent) dropped(m *message, f Faults) bool {
	var always bool
	var rate float64
	switch m.kind {
	case KindNodeReady:
		always, rate = f.DropNodeReady, f.DropNodeReadyRate
	case KindTaskStatus:
		always, rate = f.DropTaskStatus, f.DropTaskStatusRate
	default:
		return false
	}
	why := ""
	switch {
	case always:
		why = "fault " + faultName(m.kind, false)
	case rate > 0: // false for NaN too: SetFaults does not validate
		a.mu.Lock()
		x := a.rngs[m.kind].Float64()
		a.mu.Unlock()
		if x < rate {
			why = fmt.Sprintf("fault %s %g (drew %.4f)", faultName(m.kind, true), rate, x)
		}
	}
	if why == "" {
		return false
	}
	r := m.rec(OutcomeDropped)
	r.Error = why
	a.record(r)
	return true
}

// faultName names the fault that drops a kind of callback.
func faultName(k CallbackKind, rate bool) string {
	name := "DropTaskStatus"
	if k == KindNodeReady {
		name = "DropNodeReady"
	}
	if rate {
		name += "Rate"
	}
	return name
}

// heartbeat sends one heartbeat, takes a refreshed token from its answer
// and, after a 2xx, re-sends the pending workspace ready callbacks.
func (a *Agent) heartbeat(ctx context.Context) {
	a.mu.Lock()
	active := a.activeLocked()
	token := a.nodeToken
	a.mu.Unlock()
	metrics := a.cfg.Metrics(active)
	m := newMessage(KindHeartbeat, vmagent.NodeHeartbeatPath(a.cfg.NodeID), token, vmagent.HeartbeatRequest{
		NodeID:           a.cfg.NodeID,
		ActiveWorkspaces: active,
		AgentVersion:     a.cfg.AgentVersion,
		Metrics:          &metrics,
	})
	status, answer := a.deliverOnce(ctx, m)
	if !delivered(status) {
		return
	}
	var hb vmagent.HeartbeatResponse
	if json.Unmarshal(answer, &hb) == nil && hb.RefreshedToken != "" {
		a.mu.Lock()
		a.nodeToken = hb.RefreshedToken
		a.mu.Unlock()
	}
	a.resendPending(ctx)
}

// heartbeatLoop sends a heartbeat every interval until ctx ends.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	if a.cfg.HeartbeatInterval < 0 {
		return
	}
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.heartbeat(ctx)
		}
	}
}

// readyMessage builds the workspace ready callback of ws; the caller holds
// a.mu.
// failWorkspaceLocked marks a workspace failed and returns the ledger
// hook and the provisioning-failed callback to send (with a.mu held; the
// caller unlocks, runs the hook and sends).
func (a *Agent) failWorkspaceLocked(ws *workspace, f Faults) (hook func(), m *message) {
	ws.status = vmagent.StatusError
	hook = a.emitLocked(Event{Kind: EventWorkspaceFailed, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: f.failureMessage()})
	m = newMessage(KindProvisioningFailed, vmagent.ProvisioningFailedPath(ws.id), ws.callbackToken,
		vmagent.ProvisioningFailedRequest{ErrorMessage: f.failureMessage()})
	m.workspaceID, m.projectID, m.taskID = ws.id, ws.projectID, ws.taskID
	m.retryLimits = true
	return hook, m
}

func (a *Agent) readyMessageLocked(ws *workspace, status string) *message {
	m := newMessage(KindWorkspaceReady, vmagent.WorkspaceReadyPath(ws.id), ws.callbackToken,
		vmagent.WorkspaceReadyRequest{Status: status})
	m.workspaceID, m.projectID, m.taskID = ws.id, ws.projectID, ws.taskID
	return m
}

// sendReady delivers the ready callback of ws under the retry policy,
// beginning with attempt first; when the retries run out it is kept
// pending for the heartbeats.
func (a *Agent) sendReady(ctx context.Context, ws *workspace, m *message, status string, first int) {
	if m.token == "" {
		r := m.rec(OutcomeSkipped)
		r.Error = "no callback token"
		a.record(r)
		return
	}
	if a.deliverRetried(ctx, m, first) {
		return
	}
	a.mu.Lock()
	current := a.workspaces[ws.id] == ws
	if current {
		ws.readyPending = status
	}
	a.mu.Unlock()
	if current {
		a.record(m.rec(OutcomePending))
	}
}

// resendPending re-sends, once each, the ready callbacks kept pending; a
// 2xx or a 4xx settles one.
func (a *Agent) resendPending(ctx context.Context) {
	type pending struct {
		ws     *workspace
		status string
		m      *message
	}
	var list []pending
	a.mu.Lock()
	for _, ws := range a.workspaces {
		if ws.readyPending != "" {
			list = append(list, pending{ws, ws.readyPending, a.readyMessageLocked(ws, ws.readyPending)})
		}
	}
	a.mu.Unlock()
	slices.SortFunc(list, func(x, y pending) int { return strings.Compare(x.ws.id, y.ws.id) })
	for _, p := range list {
		if ctx.Err() != nil {
			return
		}
		status, _ := a.post(ctx, p.m, 1, false, true)
		if status == 0 || p.m.retryable(status) {
			continue
		}
		a.mu.Lock()
		if a.workspaces[p.ws.id] == p.ws && p.ws.readyPending == p.status {
			p.ws.readyPending = ""
		}
		a.mu.Unlock()
		if delivered(status) && a.Faults().DuplicateCallbacks {
			a.post(ctx, p.m, 1, true, true)
		}
	}
}

// sendProvisioningFailed delivers the provisioning-failed callback of a
// workspace under the retry policy (408 and 429 retried too).
func (a *Agent) sendProvisioningFailed(ctx context.Context, m *message) {
	if m.token == "" {
		r := m.rec(OutcomeSkipped)
		r.Error = "no callback token"
		a.record(r)
		return
	}
	if !a.deliverRetried(ctx, m, 1) {
		a.record(m.rec(OutcomeGaveUp))
	}
}

func (a *Agent) logCallback(r CallbackRecord) {
	a.log.Debug("callback", "kind", r.Kind, "workspace", r.WorkspaceID, "url", r.URL,
		"attempt", r.Attempt, "status", r.StatusCode, "outcome", r.Outcome, "error", r.Error)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
