package hetzner

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The limiter never has more than its bound in flight, and once the API
// says the budget is spent (RateLimit-Remaining: 0, or a 429), the next
// request waits for the bucket to refill instead of being sent at once.
func TestLimiterBoundsAndPaces(t *testing.T) {
	var inFlight, peak atomic.Int32
	var remaining atomic.Int64
	remaining.Store(100)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("RateLimit-Remaining", strconv.FormatInt(remaining.Load(), 10))
	}))
	defer ts.Close()
	// 36,000 an hour: ten a second, so an empty bucket refills one token
	// in 100 ms.
	l := newLimiter(http.DefaultTransport, 3, 36000)
	client := &http.Client{Transport: l}
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(ts.URL)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Errorf("%d requests in flight at once, want at most 3", p)
	}

	remaining.Store(0)
	resp, err := client.Get(ts.URL) // tells the limiter the budget is spent
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	resp, err = client.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("the request after RateLimit-Remaining: 0 went out after %s, want a wait for the refill", waited)
	}

	// A caller that gives up while waiting gets its context's error.
	l.observe(&http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
	if _, err := client.Do(req); err == nil {
		t.Error("a request whose context ended while waiting for a token was sent")
	}
}
