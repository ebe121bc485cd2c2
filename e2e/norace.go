//go:build !race

package e2e

// raceEnabled reports whether this binary runs under the race detector.
const raceEnabled = false
