package fsm

import "io"

// WriteSnapshotAt writes the current state in snapshot format to w, like
// WriteSnapshot, and returns the applied index of the state it wrote (a
// backup names the index it holds).
func (f *FSM) WriteSnapshotAt(w io.Writer) (uint64, error) {
	f.mu.Lock()
	st := f.st.clone()
	f.mu.Unlock()
	return st.index, st.writeTo(w)
}
