// Package bench holds the harnesses behind `make bench` and `tdf bench`:
// raw raft against tdf's step commits on the same three-node loopback
// cluster, the pipeline end to end with zero-delay fakes, the alarm wheel
// with a million alarms, FSM memory, snapshots and restart with a million
// tasks, and API submit latency on the leader and through a follower.
//
// Every harness takes its sizes as options, so that the same code runs at
// full size from `tdf bench` and at a tiny size in the package's smoke test
// (which checks that the numbers are sane, never how fast they are). The
// figures and how to read them are in BENCHMARKS.md.
package bench
