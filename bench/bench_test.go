package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestHarnessFigures checks that the figures are sane, not fast: memory
// per task is positive, raw raft committed something, its percentiles are
// ordered. It comes first in the file, so it runs before TestSmoke: the
// memory figure is a live-heap delta, and the garbage of TestSmoke's
// clusters, freed while it measures, once made it negative.
func TestHarnessFigures(t *testing.T) {
	ctx := context.Background()
	mem, err := MemoryPerTask(ctx, 1000)
	if err != nil || mem <= 0 {
		t.Errorf("memory per task %v, %v", mem, err)
	}
	raw, err := RawRaft(ctx, RawOptions{Dir: t.TempDir(), Clients: []int{2}, Duration: 200 * time.Millisecond, Payload: 64})
	if err != nil {
		t.Fatal(err)
	}
	if r := raw[0]; r.Ops == 0 || r.P50 <= 0 || r.P99 < r.P50 || r.PerSec() <= 0 {
		t.Errorf("raw raft: %+v", r)
	}
}

// TestSmoke runs every harness at a tiny size and checks that each
// produced its table with numbers in it; it asserts no speed (CI machines
// vary), only that the harnesses work end to end.
func TestSmoke(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), &out, t.TempDir(), SmokeSizes(), nil); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, header := range []string{"raw raft applies/s", "completed tasks/s", "lateness p50", "heap per finished task", "forwarding overhead"} {
		if !strings.Contains(out.String(), header) {
			t.Errorf("no %q table in the output", header)
		}
	}
}
