package lb

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Run polls every backend's health until ctx ends, a first round at once.
func (b *Balancer) Run(ctx context.Context) {
	for {
		b.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.opts.CheckInterval):
		}
	}
}

// Check runs one round of health checks, all backends at once.
func (b *Balancer) Check(ctx context.Context) {
	var wg sync.WaitGroup
	for _, be := range b.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if state := b.probe(ctx, be); ctx.Err() == nil {
				b.setState(be, state)
			}
		}()
	}
	wg.Wait()
}

// probe asks one backend's health path: 200 is ready, any other answer
// live (the process runs but knows no leader), no answer down.
func (b *Balancer) probe(ctx context.Context, be *backend) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, be.url.String()+b.opts.HealthPath, nil)
	if err != nil {
		return StateDown
	}
	resp, err := b.checker.Do(req)
	if err != nil {
		return StateDown
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return StateReady
	}
	return StateLive
}
