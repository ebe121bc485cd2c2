package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/timers"
)

// Config configures the runner. The zero value of a field means its default.
type Config struct {
	// Workers bounds how many steps the leader works on at once: claims,
	// decisions and commits waiting for raft included.
	Workers int
	// Calls bounds how many step handlers run at once: each is a call to
	// the cloud API or a VM agent. A worker waiting for a commit holds no
	// call slot, so cheap steps are not queued behind slow calls, and the
	// cloud sees at most Calls requests from tdf at a time.
	Calls int
	// MaxRetries is how many transient failures a step may have before
	// the task fails.
	MaxRetries int
	// RetryBase and RetryMax shape the backoff: base·2^retry, capped at
	// max, with ±20 % jitter.
	RetryBase time.Duration
	RetryMax  time.Duration
	// SweepInterval is how often the sweeper looks for stuck tasks.
	SweepInterval time.Duration
	// Stuck thresholds: time in a status after which a task whose alarm has
	// also stalled is failed by the sweeper.
	StuckQueued     time.Duration
	StuckDelegated  time.Duration
	StuckInProgress time.Duration
	// Clock drives the wheel and stamps commands; tests inject a fake.
	Clock timers.Clock
	// Jitter returns a number in [0, 1); tests make it deterministic.
	Jitter func() float64
	// DestroyNode deletes a destroying node's server; nil means there is
	// no cloud (the node is marked deleted at once).
	DestroyNode func(ctx context.Context, n *fsm.Node) error
	// OnStep, if set, is told of every committed step result: the step,
	// its outcome and how long the attempt took (metrics).
	OnStep func(step fsm.Step, outcome fsm.Outcome, took time.Duration)
	// OnFire, if set, is told how late each alarm fired (metrics).
	OnFire func(lateness time.Duration)
	Logger hclog.Logger
}

// DefaultConfig returns REFERENCE.md's defaults.
func DefaultConfig() Config {
	return Config{
		Workers:         256,
		Calls:           32,
		MaxRetries:      3,
		RetryBase:       5 * time.Second,
		RetryMax:        60 * time.Second,
		SweepInterval:   time.Minute,
		StuckQueued:     10 * time.Minute,
		StuckDelegated:  16 * time.Minute,
		StuckInProgress: 4*time.Hour + 5*time.Minute,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.Calls <= 0 {
		c.Calls = d.Calls
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryBase <= 0 {
		c.RetryBase = d.RetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = d.RetryMax
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = d.SweepInterval
	}
	if c.StuckQueued <= 0 {
		c.StuckQueued = d.StuckQueued
	}
	if c.StuckDelegated <= 0 {
		c.StuckDelegated = d.StuckDelegated
	}
	if c.StuckInProgress <= 0 {
		c.StuckInProgress = d.StuckInProgress
	}
	if c.Clock == nil {
		c.Clock = timers.RealClock()
	}
	if c.Jitter == nil {
		c.Jitter = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Validate checks the configuration as the runner will use it (zero
// fields at their defaults); messages name the field.
func (c Config) Validate() error {
	c.fill()
	if c.RetryMax < c.RetryBase {
		return fmt.Errorf("retry max delay %s is below the base delay %s", c.RetryMax, c.RetryBase)
	}
	return nil
}

// backoff is the delay before retry number n+1 (n retries so far).
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryBase
	for i := 0; i < n && d < c.RetryMax; i++ {
		d *= 2
	}
	d = min(d, c.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*c.Jitter()))
}
