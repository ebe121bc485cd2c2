package bench

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/tdf-project/tdf/fsm"
)

// keep holds the last benchmark's FSM so that a -memprofile taken at the
// end shows what its tasks keep alive (inuse_space).
var keep *fsm.FSM

// BenchmarkFinishTask drives one task through the whole pipeline straight
// on an FSM (no raft): encode, decode and apply of its 15 commands. With
// -memprofile, inuse_space shows what a finished task keeps.
func BenchmarkFinishTask(b *testing.B) {
	f := fsm.New()
	d := newFSMDriver(f)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := d.finish(context.Background(), i); err != nil {
			b.Fatal(err)
		}
	}
	keep = f
}

// BenchmarkSnapshot restores and persists a state of 20k finished tasks
// (seed of 200 driven tasks, each copied 100 times): with -cpuprofile it
// shows where snapshot time goes.
func BenchmarkSnapshot(b *testing.B) {
	seed := fsm.New()
	d := newFSMDriver(seed)
	for i := 0; i < 200; i++ {
		if err := d.finish(context.Background(), i); err != nil {
			b.Fatal(err)
		}
	}
	var s, big bytes.Buffer
	if err := seed.WriteSnapshot(&s); err != nil {
		b.Fatal(err)
	}
	if err := multiplySnapshot(&big, s.Bytes(), 100); err != nil {
		b.Fatal(err)
	}
	b.Run("restore", func(b *testing.B) {
		b.SetBytes(int64(big.Len()))
		for i := 0; i < b.N; i++ {
			f := fsm.New()
			if err := f.Restore(io.NopCloser(bytes.NewReader(big.Bytes()))); err != nil {
				b.Fatal(err)
			}
			keep = f
		}
	})
	b.Run("persist", func(b *testing.B) {
		b.SetBytes(int64(big.Len()))
		for i := 0; i < b.N; i++ {
			if err := keep.WriteSnapshot(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
