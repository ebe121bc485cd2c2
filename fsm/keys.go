package fsm

import "time"

// SigningKey is one of the cluster's token signing keys, replicated so that
// every node signs and verifies alike. The newest signs; older ones verify
// until the tokens they signed have expired.
type SigningKey struct {
	ID        string    `json:"id"`
	PEM       []byte    `json:"pem"`
	CreatedAt time.Time `json:"created_at"`
}

// MaxSigningKeys bounds the key set: the newest signs, the rest verify.
const MaxSigningKeys = 3

// AddSigningKey adds a key to the set (the leader generates it), dropping
// the oldest past MaxSigningKeys. Adding a key id twice is a no-op.
type AddSigningKey struct {
	Key SigningKey `json:"key"`
}

// Type implements Command.
func (AddSigningKey) Type() CommandType { return CmdAddSigningKey }

func (f *FSM) applyAddSigningKey(c AddSigningKey, res *Result) {
	for _, k := range f.st.keys {
		if k.ID == c.Key.ID {
			res.Unchanged = true
			return
		}
	}
	keys := append(append([]SigningKey(nil), f.st.keys...), c.Key)
	if len(keys) > MaxSigningKeys {
		keys = keys[len(keys)-MaxSigningKeys:]
	}
	f.st.keys = keys
}

// SigningKeys returns the key set, oldest first.
func (f *FSM) SigningKeys() []SigningKey {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.keys
}
