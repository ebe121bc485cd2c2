package fsm

// KnownRequest reports whether a submission with this request id was
// applied (and its idempotency entry is still kept): a retry of it is
// answered with the first result, whatever the state now.
func (f *FSM) KnownRequest(requestID string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.idem.Has(&idemEntry{Key: requestID})
}
