//go:build !nofence

package fsm

// fenceResults: a step result is accepted only for the task's current
// claim (its step, attempt and term, still in flight). The chaos checker's
// own test builds with -tags nofence to switch this off (fence_off.go) and
// shows that the checker then catches the stale results that get through.
const fenceResults = true
