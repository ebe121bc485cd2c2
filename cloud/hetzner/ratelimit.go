package hetzner

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter keeps tdf within Hetzner's request budget (3,600 an hour per
// project, refilled about one a second): at most MaxConcurrent requests at
// once, and a local token bucket of RequestsPerHour that each answer's
// RateLimit-Remaining sets (other users of the project spend the same
// budget) and a 429 empties. A request waits for a token rather than being
// sent to fail; a 429 that comes all the same is re-sent by hcloud-go
// after its backoff, and the wait for the next token spaces it out.
type limiter struct {
	next   http.RoundTripper
	sem    chan struct{}
	perSec float64 // 0: no pacing
	burst  float64

	mu     sync.Mutex
	tokens float64
	at     time.Time
}

func newLimiter(next http.RoundTripper, concurrent, perHour int) *limiter {
	l := &limiter{next: next, sem: make(chan struct{}, concurrent), at: time.Now()}
	if perHour > 0 {
		l.perSec, l.burst = float64(perHour)/3600, float64(perHour)
		l.tokens = l.burst
	}
	return l
}

func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.sem }()
	if err := l.take(ctx); err != nil {
		return nil, err
	}
	resp, err := l.next.RoundTrip(req)
	if err == nil {
		l.observe(resp)
	}
	return resp, err
}

// take waits until a token is there and takes it.
func (l *limiter) take(ctx context.Context) error {
	if l.perSec == 0 {
		return nil
	}
	for {
		l.mu.Lock()
		now := time.Now()
		l.tokens = math.Min(l.burst, l.tokens+now.Sub(l.at).Seconds()*l.perSec)
		l.at = now
		if l.tokens >= 1 {
			l.tokens--
			l.mu.Unlock()
			return nil
		}
		wait := time.Duration((1 - l.tokens) / l.perSec * float64(time.Second))
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// observe sets the bucket to what the API says is left.
func (l *limiter) observe(resp *http.Response) {
	if l.perSec == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if resp.StatusCode == http.StatusTooManyRequests {
		l.tokens = 0
		return
	}
	// The API's count is the project's budget, spent by every user of the
	// project: it replaces ours, up and down (a refill we did not see, or
	// another client's spending).
	if v, err := strconv.ParseFloat(resp.Header.Get("RateLimit-Remaining"), 64); err == nil {
		l.tokens = math.Min(l.burst, v)
	}
}

// CloseIdleConnections passes on to the transport below.
func (l *limiter) CloseIdleConnections() {
	if c, ok := l.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
