package fsm

import "fmt"

// CmdSealSigningKeys (46, sealed signing keys) replaces signing keys kept
// in the clear by the same keys sealed under the cluster keyring: what a
// leader with a keyring commits when it finds clear keys (a cluster that
// ran without a keyring, or one from before sealing). It carries
// IgnoreUnknown: a binary that skips it keeps the clear keys it had.
const CmdSealSigningKeys CommandType = 46

func init() { commands[CmdSealSigningKeys] = func() Command { return &SealSigningKeys{} } }

// SealSigningKeys carries sealed forms of keys in the set; each replaces
// the key of its id if that one is still in the clear. Keys no longer in
// the set are ignored.
type SealSigningKeys struct {
	Keys []SigningKey `json:"keys"`
}

// Type implements Command.
func (SealSigningKeys) Type() CommandType { return CmdSealSigningKeys | IgnoreUnknown }

// Sealed reports whether the key's private part is sealed.
func (k SigningKey) Sealed() bool { return len(k.Ciphertext) > 0 }

// SealAAD is the additional data a signing key is sealed with: it binds
// the ciphertext to the key's id.
func (k SigningKey) SealAAD() []byte { return []byte("tdf signing key v1\x00" + k.ID) }

func (k SigningKey) validateSealed() error {
	switch {
	case !k.Sealed() || k.SealKeyID == "":
		return fmt.Errorf("%w: signing key %s is not sealed", ErrInvalid, k.ID)
	case len(k.PEM) > 0:
		return fmt.Errorf("%w: signing key %s carries its PEM besides the sealed form", ErrInvalid, k.ID)
	case len(k.Nonce) != credentialNonceLen:
		return fmt.Errorf("%w: signing key %s: the nonce is %d bytes, want %d", ErrInvalid, k.ID, len(k.Nonce), credentialNonceLen)
	}
	return nil
}

func (f *FSM) applySealSigningKeys(c SealSigningKeys, res *Result) {
	for _, k := range c.Keys {
		if err := k.validateSealed(); err != nil {
			res.Err = err
			return
		}
	}
	keys := append([]SigningKey(nil), f.st.keys...)
	changed := false
	for i, old := range keys {
		for _, k := range c.Keys {
			if k.ID == old.ID && !old.Sealed() {
				k.CreatedAt = old.CreatedAt
				keys[i], changed = k, true
			}
		}
	}
	if changed {
		// Replaced, never changed in place: clones share the slice.
		f.st.keys = keys
	}
}
