//go:build nofence

package fsm

// fenceResults is off in a `-tags nofence` build, for the chaos checker's
// test only: every step result is applied, stale or not. Never ship it.
const fenceResults = false
