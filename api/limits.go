package api

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// bucket is one caller's token bucket: it holds up to burst tokens and
// refills at rate per second; a request takes one.
type bucket struct {
	tokens float64
	last   time.Time
}

// rateLimiter keeps one bucket per key (a token's subject, or a client IP
// when authentication is off). Buckets idle long enough to be full again
// are dropped, so the map stays as small as the set of active callers.
type rateLimiter struct {
	rate  float64
	burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket. When it is empty it returns false
// and how long until a token is there.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

func (l *rateLimiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.lastSweep) < full && len(l.buckets) < 10000 {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
}

// rateLimit answers 429 with Retry-After when the caller's bucket is
// empty. With authentication on the key is the token's subject (health,
// dashboard files and the agents' callbacks carry no API token and are not
// limited here); with it off, the client's IP, if an IP limit is set.
// Requests forwarded by another node were counted there, but the leader
// counts them again in its own buckets: a caller's rate is per node.
func (s *Server) rateLimit(c *gin.Context) {
	var key string
	if p, ok := caller(c); ok {
		if s.tokenLimit == nil {
			c.Next()
			return
		}
		key = "token:" + p.Subject
		s.limitWith(c, s.tokenLimit, key)
		return
	}
	if s.ipLimit == nil || s.cfg.Auth.Len() > 0 || c.GetHeader(headerHops) != "" {
		c.Next()
		return
	}
	switch c.FullPath() {
	// Probes, and nodes registering themselves (from the same addresses
	// as clients on a shared host): not what a per-IP limit is for.
	case "/healthz", "/readyz", "/v1/cluster/join":
		c.Next()
		return
	}
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		host = c.Request.RemoteAddr
	}
	s.limitWith(c, s.ipLimit, "ip:"+host)
}

func (s *Server) limitWith(c *gin.Context, l *rateLimiter, key string) {
	ok, wait := l.allow(key, time.Now())
	if ok {
		c.Next()
		return
	}
	secs := int(math.Ceil(wait.Seconds()))
	c.Header("Retry-After", strconv.Itoa(max(1, secs)))
	s.cfg.Metrics.countRateLimited()
	abortError(c, http.StatusTooManyRequests, CodeRateLimited,
		fmt.Sprintf("rate limit of %g requests/s (burst %g) exceeded; retry after %d s", l.rate, l.burst, max(1, secs)))
}
