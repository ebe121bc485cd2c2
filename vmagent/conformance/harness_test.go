package conformance_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/tokens"
)

// controlPlane stands in for tdf in front of one agent: it serves the JWKS
// the agent fetches at start, answers the control-plane routes the agent
// needs to run a prompt (git token, agent key, runtime assets, settings)
// in tdf's formats, and accepts and records every callback.
type controlPlane struct {
	URL    string
	Issuer *tokens.Issuer
	srv    *httptest.Server

	mu    sync.Mutex
	calls []cpCall
}

// cpCall is one request the agent made to the control plane.
type cpCall struct {
	Method, Path string
	// Token is the bearer token it carried.
	Token string
	Body  []byte
}

// agentKeySecret and gitTokenSecret are what the control plane hands out.
const (
	agentKeySecret = "conformance-agent-key"
	gitTokenSecret = "conformance-git-token"
)

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	key, err := tokens.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{}
	cp.srv = httptest.NewUnstartedServer(cp.handler())
	cp.srv.Start()
	t.Cleanup(cp.srv.Close)
	cp.URL = cp.srv.URL
	cp.Issuer = &tokens.Issuer{URL: cp.URL, Keys: func() []tokens.Key { return []tokens.Key{key} }, Now: time.Now}
	return cp
}

func (cp *controlPlane) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, cp.Issuer.JWKS())
	})
	mux.HandleFunc("POST /api/nodes/{id}/ready", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"status": "running", "readyAt": time.Now().UTC().Format(time.RFC3339)})
	})
	mux.HandleFunc("POST /api/workspaces/{id}/ready", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"success": true})
	})
	// The answers tdf gives (api/agentroutes.go), with fixed secrets.
	mux.HandleFunc("POST /api/workspaces/{id}/git-token", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"token": gitTokenSecret, "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	})
	mux.HandleFunc("POST /api/workspaces/{id}/agent-key", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"apiKey": agentKeySecret, "credentialKind": "api-key"})
	})
	mux.HandleFunc("GET /api/workspaces/{id}/runtime-assets", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"workspaceId": r.PathValue("id"), "envVars": []any{}, "files": []any{}})
	})
	mux.HandleFunc("/api/workspaces/{id}/agent-settings", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"model": nil, "permissionMode": nil, "opencodeProvider": nil, "opencodeBaseUrl": nil})
	})
	mux.HandleFunc("POST /api/workspaces/{id}/messages", func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Messages []json.RawMessage }
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &b)
		writeJSON(w, map[string]any{"persisted": len(b.Messages), "duplicates": 0})
	})
	// Everything else (heartbeats, node reports, boot log, task status,
	// ACP activity) is accepted.
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, map[string]any{}) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		cp.mu.Lock()
		cp.calls = append(cp.calls, cpCall{Method: r.Method, Path: r.URL.Path, Token: tok, Body: body})
		cp.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Calls returns the recorded requests to path (method POST).
func (cp *controlPlane) Calls(path string) []cpCall {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []cpCall
	for _, c := range cp.calls {
		if c.Method == http.MethodPost && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// waitCall waits for the first POST to path and returns it.
func (cp *controlPlane) waitCall(t *testing.T, timeout time.Duration, path string) cpCall {
	t.Helper()
	var got cpCall
	waitFor(t, timeout, "a POST to "+path, func() error {
		calls := cp.Calls(path)
		if len(calls) == 0 {
			return fmt.Errorf("none yet (%d requests in all)", cp.count())
		}
		got = calls[0]
		return nil
	})
	return got
}

func (cp *controlPlane) count() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.calls)
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exchange is one request to the agent and its answer, as recorded by
// recorder.
type exchange struct {
	Method, Path string
	Status       int
	Body         []byte
}

// recorder is the transport of the vmagent.Client the checks drive: it
// keeps the last answer, so that the checks see the exact status and body
// behind what the client made of them.
type recorder struct {
	mu   sync.Mutex
	last exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.last = exchange{Method: req.Method, Path: req.URL.Path, Status: resp.StatusCode, Body: body}
	r.mu.Unlock()
	return resp, nil
}

// Last is the last answer.
func (r *recorder) Last() exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
