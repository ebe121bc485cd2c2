package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// WorkloadConfig shapes the clients.
type WorkloadConfig struct {
	// Clients is the number of concurrent clients (default 4).
	Clients int
	// Rate caps submissions per second over all clients (default 5).
	Rate float64
	// ReadsPerSubmit is how many consistent reads a client makes after each
	// submission (default 2).
	ReadsPerSubmit int
	// RequestTimeout bounds one HTTP request (default 5s: a paused node
	// hangs, and the client moves on to another).
	RequestTimeout time.Duration
	// SubmitDeadline bounds the re-sends of one submission (default 2m).
	SubmitDeadline time.Duration
	// Users spreads tasks over this many users (default 10).
	Users int
	// Seed makes node and task choices reproducible.
	Seed uint64
}

func (c *WorkloadConfig) defaults() {
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Rate <= 0 {
		c.Rate = 5
	}
	if c.ReadsPerSubmit < 0 {
		c.ReadsPerSubmit = 0
	} else if c.ReadsPerSubmit == 0 {
		c.ReadsPerSubmit = 2
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.SubmitDeadline <= 0 {
		c.SubmitDeadline = 2 * time.Minute
	}
	if c.Users <= 0 {
		c.Users = 10
	}
}

// Workload is a set of clients running against a Target until stopped.
type Workload struct {
	cfg    WorkloadConfig
	target Target
	http   *http.Client
	tokens chan struct{}
	stopCh chan struct{}
	wg     sync.WaitGroup
	runID  string

	mu        sync.Mutex
	ops       []Op
	outages   []Outage
	known     []string // acknowledged task ids
	abandoned []string
	submitted int
}

// StartWorkload starts the clients.
func StartWorkload(target Target, cfg WorkloadConfig) *Workload {
	cfg.defaults()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	w := &Workload{cfg: cfg, target: target, http: &http.Client{Timeout: cfg.RequestTimeout, Transport: tr},
		tokens: make(chan struct{}), stopCh: make(chan struct{}),
		runID: fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff)}
	w.wg.Add(1)
	go w.pace()
	for i := range cfg.Clients {
		w.wg.Add(1)
		go w.client(i)
	}
	return w
}

// pace hands out one submission token every 1/Rate.
func (w *Workload) pace() {
	defer w.wg.Done()
	t := time.NewTicker(time.Duration(float64(time.Second) / w.cfg.Rate))
	defer t.Stop()
	for {
		select {
		case <-w.stopCh:
			return
		case <-t.C:
		}
		select {
		case <-w.stopCh:
			return
		case w.tokens <- struct{}{}:
		case <-t.C:
			// nobody was ready: the clients are saturated; skip a beat
		}
	}
}

// Stop ends the clients. A submission in progress goes on until it is
// acknowledged or its deadline passes, so that its outcome is known.
func (w *Workload) Stop() {
	close(w.stopCh)
	w.wg.Wait()
	w.http.CloseIdleConnections()
}

// Record copies what the clients recorded into h.
func (w *Workload) Record(h *History) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h.Ops = append(h.Ops, w.ops...)
	h.Outages = append(h.Outages, w.outages...)
	h.Submitted += w.submitted
	h.Abandoned = append(h.Abandoned, w.abandoned...)
}

// Submitted is the number of acknowledged submissions so far.
func (w *Workload) Submitted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.submitted
}

// clientState is one client's private state.
type clientState struct {
	id      int
	rng     *rand.Rand
	outFrom time.Time // start of the current outage (zero: none)
	outFail int
}

func (w *Workload) client(id int) {
	defer w.wg.Done()
	cs := &clientState{id: id, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(id)+1))}
	for seq := 0; ; seq++ {
		select {
		case <-w.stopCh:
			return
		case <-w.tokens:
		}
		w.submit(cs, seq)
		for range w.cfg.ReadsPerSubmit {
			select {
			case <-w.stopCh:
				return
			default:
			}
			w.read(cs)
		}
	}
}

// failed and succeeded track the client's unavailability windows.
func (w *Workload) failed(cs *clientState, at time.Time) {
	if cs.outFrom.IsZero() {
		cs.outFrom = at
	}
	cs.outFail++
}

func (w *Workload) succeeded(cs *clientState, at time.Time) {
	if cs.outFrom.IsZero() {
		return
	}
	w.mu.Lock()
	w.outages = append(w.outages, Outage{Client: cs.id, From: cs.outFrom, To: at, Length: at.Sub(cs.outFrom), Failures: cs.outFail})
	w.mu.Unlock()
	cs.outFrom, cs.outFail = time.Time{}, 0
}

func (w *Workload) randomNode(cs *clientState) string {
	nodes := w.target.Nodes()
	return nodes[cs.rng.IntN(len(nodes))]
}

// submit posts one task with an Idempotency-Key, re-sending it with the
// same key to another random node after a 503 or a transport error (an
// unknown outcome), until a 202.
func (w *Workload) submit(cs *clientState, seq int) {
	key := fmt.Sprintf("chaos-%s-%d-%d", w.runID, cs.id, seq)
	body, _ := json.Marshal(map[string]string{
		"project_id": "p-chaos",
		"user_id":    fmt.Sprintf("user%02d", (cs.id+seq)%w.cfg.Users),
		"prompt":     "chaos " + key,
		"repository": "github.com/acme/app",
	})
	op := Op{Client: cs.id, Kind: OpSubmit, Key: key, Call: time.Now()}
	deadline := op.Call.Add(w.cfg.SubmitDeadline)
	backoff := 50 * time.Millisecond
	for {
		op.Attempts++
		node := w.randomNode(cs)
		status, data, err := w.do(http.MethodPost, w.target.APIURL(node)+"/v1/tasks", key, body)
		now := time.Now()
		switch {
		case err == nil && status == http.StatusAccepted:
			var resp struct {
				Task Task `json:"task"`
			}
			if jerr := json.Unmarshal(data, &resp); jerr != nil || resp.Task.ID == "" {
				// Acknowledged but unreadable: the outcome is known to be
				// a success, the id is not; re-send (the key replays it).
				w.failed(cs, now)
				break
			}
			w.succeeded(cs, now)
			op.Return, op.Node, op.TaskID, op.Status, op.Step = now, node, resp.Task.ID, resp.Task.Status, resp.Task.Step
			w.mu.Lock()
			w.ops = append(w.ops, op)
			w.known = append(w.known, op.TaskID)
			w.submitted++
			w.mu.Unlock()
			return
		case err == nil && status != http.StatusServiceUnavailable && status < 500:
			// A client error is a bug of the workload or of the API:
			// record it as an abandoned key with its answer.
			w.mu.Lock()
			w.abandoned = append(w.abandoned, fmt.Sprintf("%s: %d %s", key, status, bytes.TrimSpace(data)))
			w.mu.Unlock()
			return
		default:
			w.failed(cs, now)
		}
		if now.After(deadline) {
			w.mu.Lock()
			w.abandoned = append(w.abandoned, fmt.Sprintf("%s: no acknowledgement within %s (%d attempts)", key, w.cfg.SubmitDeadline, op.Attempts))
			w.mu.Unlock()
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// read does one consistent read of a known task on a random node. A read
// without an answer (or a 503) has no effect and is not an operation of
// the history; it counts towards the client's unavailability.
func (w *Workload) read(cs *clientState) {
	w.mu.Lock()
	n := len(w.known)
	var id string
	if n > 0 {
		// Mostly recent tasks, which are still moving.
		id = w.known[n-1-min(cs.rng.IntN(64), n-1)]
	}
	w.mu.Unlock()
	if id == "" {
		return
	}
	node := w.randomNode(cs)
	call := time.Now()
	status, data, err := w.do(http.MethodGet, w.target.APIURL(node)+"/v1/tasks/"+id+"?consistent=true", "", nil)
	now := time.Now()
	op := Op{Client: cs.id, Kind: OpRead, TaskID: id, Node: node, Call: call, Return: now, Attempts: 1}
	switch {
	case err != nil || status == http.StatusServiceUnavailable || status >= 500:
		w.failed(cs, now)
		return
	case status == http.StatusNotFound:
		// Recorded with no status: the model says whether that was legal.
	case status == http.StatusOK:
		var resp struct {
			Task Task `json:"task"`
		}
		if json.Unmarshal(data, &resp) != nil {
			w.failed(cs, now)
			return
		}
		op.Status, op.Step = resp.Task.Status, resp.Task.Step
	default:
		w.failed(cs, now)
		return
	}
	w.succeeded(cs, now)
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

func (w *Workload) do(method, url, key string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, data, err
}
