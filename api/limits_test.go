package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

// Each token has its own bucket: once alice's burst is spent she gets 429
// with Retry-After and a JSON body, while bob is still served.
func TestRateLimitPerToken(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{API: func(ac *api.Config) {
		ac.Auth = testTokens(t)
		// A refill slow enough that the burst cannot come back while the
		// test runs on a loaded machine.
		ac.RateLimit, ac.RateBurst = 0.01, 3
	}})
	for i := range 3 {
		if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(aliceToken)); r.Status != http.StatusOK {
			t.Fatalf("request %d within the burst = %d %s", i+1, r.Status, r.Body)
		}
	}
	r := c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(aliceToken))
	checkError(t, "over the burst", r, http.StatusTooManyRequests, api.CodeRateLimited, "rate limit")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", r.Header.Get("Retry-After"))
	}
	if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(bobToken)); r.Status != http.StatusOK {
		t.Fatalf("bob, with his own bucket = %d %s", r.Status, r.Body)
	}
	// Health checks are never limited.
	if r := c.Do(n, http.MethodGet, "/healthz", nil, bearer(aliceToken)); r.Status != http.StatusOK {
		t.Fatalf("healthz while limited = %d", r.Status)
	}
}

// With authentication off, an IP limit applies per client address.
func TestRateLimitPerIPWhenAuthOff(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{API: func(ac *api.Config) { ac.IPRateLimit, ac.RateBurst = 0.01, 2 }})
	for i := range 2 {
		if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d = %d", i+1, r.Status)
		}
	}
	checkError(t, "third from the same IP", c.Do(n, http.MethodGet, "/v1/tasks", nil, nil), http.StatusTooManyRequests, api.CodeRateLimited, "rate limit")
	if r := c.Do(n, http.MethodGet, "/readyz", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("readyz while limited = %d", r.Status)
	}
}

func limitedNode(t *testing.T, lim server.HTTPLimits) (*server.TestCluster, *server.TestNode) {
	return singleNode(t, server.TestOptions{Server: func(c *server.Config) { c.HTTPLimits = lim }})
}

// A client that never finishes its headers (slowloris) is disconnected
// once ReadHeaderTimeout has passed.
func TestSlowlorisClosedAfterReadHeaderTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, n := limitedNode(t, server.HTTPLimits{ReadHeaderTimeout: timeout})
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /v1/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: a"); err != nil {
		t.Fatal(err)
	}
	// Keep dribbling header bytes; the server must hang up anyway.
	_ = conn.SetDeadline(time.Now().Add(server.TestWait))
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, conn)
		closed <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-closed:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server kept the connection open for %v", server.TestWait)
			}
			if el := time.Since(start); el < timeout {
				t.Fatalf("closed after %v, before the %v timeout", el, timeout)
			}
			return
		case <-tick.C:
			_, _ = io.WriteString(conn, "a")
		}
	}
}

// Headers over MaxHeaderBytes are refused with 431.
func TestOversizeHeadersRejected(t *testing.T) {
	c, n := limitedNode(t, server.HTTPLimits{MaxHeaderBytes: 8 << 10})
	r := c.Do(n, http.MethodGet, "/v1/tasks", nil, map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header = %d, want 431", r.Status)
	}
	if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, map[string]string{"X-Small": strings.Repeat("a", 1<<10)}); r.Status != http.StatusOK {
		t.Fatalf("1 KiB header = %d, want 200", r.Status)
	}
}

// The server's read and write timeouts bound ordinary requests but not
// the event stream, which lifts them for itself; closing the node still
// ends the stream promptly.
func TestTimeoutsSpareEventStream(t *testing.T) {
	const wt = 500 * time.Millisecond
	c, n := limitedNode(t, server.HTTPLimits{ReadTimeout: wt, WriteTimeout: wt})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Let the write timeout pass (three times over) before the event.
	time.Sleep(3 * wt)
	task := submit(t, c, n, body("u1", "after the write timeout"))
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), task.ID) {
				found <- nil
				return
			}
		}
		found <- fmt.Errorf("stream ended: %v", sc.Err())
	}()
	select {
	case err := <-found:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(server.TestWait):
		t.Fatal("the task's event never arrived")
	}
	// Shutdown cancels the stream rather than waiting it out.
	// (Without that, Shutdown would wait out its 5 s grace.)
	began := time.Now()
	c.Close()
	if el := time.Since(began); el > 4*time.Second {
		t.Fatalf("Close took %v with an open event stream", el)
	}
}
