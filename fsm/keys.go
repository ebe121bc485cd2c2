package fsm

import "time"

// SigningKey is one of the cluster's token signing keys, replicated so that
// every node signs and verifies alike. The newest signs; older ones verify
// until the tokens they signed have expired.
//
// A leader with the cluster keyring (package keyring, outside the FSM)
// seals the private key before it commits: PEM is then empty, and the
// state, the raft log from then on and every snapshot and backup carry
// only the ciphertext, its nonce and the id of the sealing key
// (signingkeys.go). A cluster without a keyring keeps PEM in the clear.
type SigningKey struct {
	ID        string    `json:"id"`
	PEM       []byte    `json:"pem,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// SealKeyID, Nonce and Ciphertext are the PEM sealed with AES-256-GCM
	// under the keyring key SealKeyID, bound to the key's id (SealAAD).
	SealKeyID  string `json:"seal_key_id,omitempty"`
	Nonce      []byte `json:"nonce,omitempty"`
	Ciphertext []byte `json:"ciphertext,omitempty"`
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
