package timers

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchN is the number of pending alarms every benchmark holds: the size a
// leader must carry without trouble.
const benchN = 1_000_000

// benchChunk is how many operations run between untimed repairs that keep a
// benchmark's wheel near benchN alarms.
const benchChunk = 1 << 16

type benchData struct {
	owners []string    // benchN task-id-like owners
	extra  []string    // benchChunk more, for inserts into a full wheel
	dues   []time.Time // benchN due times, uniform over a day, to the nanosecond
	order  []int       // a permutation of [0, benchN), for random-order cancels
}

// loadBenchData builds the owners and due times once per test binary: making
// a million strings costs more than some of the benchmarks themselves, and
// making them before a memory measurement keeps them out of it.
var loadBenchData = sync.OnceValue(func() *benchData {
	rng := rand.New(rand.NewPCG(42, 42))
	d := &benchData{
		owners: make([]string, benchN),
		extra:  make([]string, benchChunk),
		dues:   make([]time.Time, benchN),
		order:  rng.Perm(benchN),
	}
	for i := range d.owners {
		d.owners[i] = fmt.Sprintf("task-%016x", i)
		d.dues[i] = t0.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
	}
	for i := range d.extra {
		d.extra[i] = fmt.Sprintf("more-%016x", i)
	}
	return d
})

// fullWheel returns a stopped wheel on a FakeClock at t0 holding benchN alarms.
func fullWheel(d *benchData, fire func(string, time.Time)) (*Wheel, *FakeClock) {
	c := NewFakeClock(t0)
	w := New(c, fire)
	for i, o := range d.owners {
		w.Schedule(o, d.dues[i])
	}
	return w, c
}

func nopFire(string, time.Time) {}

// BenchmarkSchedule measures Schedule on a wheel holding 1M alarms: "insert"
// adds a new owner (the wheel grows to 1M+64Ki, then is trimmed untimed),
// "replace" moves an existing owner's alarm to another random time.
func BenchmarkSchedule(b *testing.B) {
	d := loadBenchData()
	b.Run("insert", func(b *testing.B) {
		w, _ := fullWheel(d, nopFire)
		i := 0
		for b.Loop() {
			w.Schedule(d.extra[i], d.dues[i])
			if i++; i == benchChunk {
				b.StopTimer()
				for _, o := range d.extra {
					w.Cancel(o)
				}
				i = 0
				b.StartTimer()
			}
		}
	})
	b.Run("replace", func(b *testing.B) {
		w, _ := fullWheel(d, nopFire)
		i := 0
		for b.Loop() {
			// Pairing owners with other owners' due times moves each alarm
			// to an unrelated place in the order.
			w.Schedule(d.owners[d.order[i]], d.dues[i])
			if i++; i == benchN {
				i = 0
			}
		}
	})
}

// BenchmarkCancel measures Cancel of a random owner on a wheel holding 1M
// alarms; every 64Ki cancels the wheel is refilled untimed.
func BenchmarkCancel(b *testing.B) {
	d := loadBenchData()
	w, _ := fullWheel(d, nopFire)
	start, i := 0, 0
	for b.Loop() {
		w.Cancel(d.owners[d.order[start+i]])
		if i++; i == benchChunk {
			b.StopTimer()
			for _, k := range d.order[start : start+benchChunk] {
				w.Schedule(d.owners[k], d.dues[k])
			}
			start = (start + benchChunk) % (benchN - benchChunk)
			i = 0
			b.StartTimer()
		}
	}
}

// BenchmarkFire loads 1M alarms, moves the fake clock past all of them and
// times the wheel's goroutine firing every one, through the real path: lock,
// pop, unlock, call fire. It reports ns per fired alarm.
func BenchmarkFire(b *testing.B) {
	d := loadBenchData()
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		var n int
		all := make(chan struct{})
		w, c := fullWheel(d, func(string, time.Time) {
			if n++; n == benchN {
				close(all)
			}
		})
		runtime.GC() // keep the loading's garbage out of the timing
		w.Start()
		b.StartTimer()

		began := time.Now()
		c.Advance(48 * time.Hour)
		<-all
		elapsed += time.Since(began)

		b.StopTimer()
		w.Stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*benchN), "ns/alarm")
}

// BenchmarkMemory reports the heap the wheel holds for 1M alarms, beyond the
// owner strings themselves (allocated before the first reading).
func BenchmarkMemory(b *testing.B) {
	d := loadBenchData()
	var perAlarm float64
	for b.Loop() {
		perAlarm = heapGrowth(func() any {
			w, _ := fullWheel(d, nopFire)
			return w
		}) / benchN
	}
	b.ReportMetric(perAlarm, "bytes/alarm")
}

// heapGrowth returns how many bytes of live heap build's result holds.
func heapGrowth(build func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}

// BenchmarkRebuild measures what a new leader pays before its wheel is ready:
// a new wheel, then one Schedule per alarm in the FSM, 1M of them. One op is
// one whole rebuild. "grow" calls Grow(1M) first, as a leader that knows the
// FSM's alarm count does.
func BenchmarkRebuild(b *testing.B) {
	d := loadBenchData()
	for _, grow := range []bool{false, true} {
		name := "schedule"
		if grow {
			name = "grow"
		}
		b.Run(name, func(b *testing.B) {
			c := NewFakeClock(t0)
			for b.Loop() {
				w := New(c, nopFire)
				if grow {
					w.Grow(benchN)
				}
				for i, o := range d.owners {
					w.Schedule(o, d.dues[i])
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/rebuild")
		})
	}
}
