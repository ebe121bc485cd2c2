package bench

import (
	"context"
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
