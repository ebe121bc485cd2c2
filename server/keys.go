package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/tokens"
)

// keyCache parses the FSM's replicated signing keys once per key set,
// opening sealed ones with the node's keyring.
type keyCache struct {
	fsm     *fsm.FSM
	log     hclog.Logger
	keyring *keyring.Keyring
	mu      sync.Mutex
	ids     []string
	keys    []tokens.Key
	// reported holds the keys already logged as unusable.
	reported map[string]bool
}

// Keys returns the parsed key set, oldest first.
func (kc *keyCache) Keys() []tokens.Key {
	set := kc.fsm.SigningKeys()
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if sameIDs(set, kc.ids) {
		return kc.keys
	}
	kc.ids, kc.keys = kc.ids[:0], nil
	for _, k := range set {
		parsed, err := openSigningKey(kc.keyring, k)
		if err != nil {
			if !kc.reported[k.ID] {
				kc.log.Error("unusable signing key in the replicated state: this node cannot sign or verify with it", "kid", k.ID, "error", err)
				if kc.reported == nil {
					kc.reported = map[string]bool{}
				}
				kc.reported[k.ID] = true
			}
			continue
		}
		kc.ids = append(kc.ids, k.ID)
		kc.keys = append(kc.keys, parsed)
	}
	if len(kc.ids) != len(set) {
		kc.ids = nil // re-parse next time rather than hide a bad key
	}
	return kc.keys
}

func sameIDs(set []fsm.SigningKey, ids []string) bool {
	if len(set) != len(ids) || len(set) == 0 {
		return false
	}
	for i := range set {
		if set[i].ID != ids[i] {
			return false
		}
	}
	return true
}

// clusterDuties returns the leader hook that keeps the replicated cluster
// configuration in line with this leader's, and purges error records older
// than errorRetention. The cluster has a control-plane URL (cp), a
// signing key exists and is
// rotated every rotateEvery (old keys stay in the set, verifying, until
// MaxSigningKeys pushes them out: two rotations later, well past the 24 h
// life of the tokens they signed), and the node settings match its flags.
func clusterDuties(f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), cp *controlPlane, settings fsm.Settings, rotateEvery, errorRetention time.Duration, kr *keyring.Keyring, log hclog.Logger) func(context.Context, uint64) {
	return func(ctx context.Context, _ uint64) {
		for {
			wait := time.Minute
			err := cp.ensure(ctx, f, apply)
			if err == nil {
				err = ensureClusterState(ctx, f, apply, settings, rotateEvery, kr)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("cannot set up cluster state; retrying", "error", err)
				wait = time.Second
			}
			// Age-based retention of the error database.
			if oldest, ok := f.OldestError(); ok && errorRetention > 0 && time.Since(oldest) > errorRetention {
				if _, err := apply(ctx, fsm.PurgeErrors{Before: time.Now().Add(-errorRetention).UTC().Round(0)}); err != nil && ctx.Err() == nil {
					log.Warn("cannot purge old error records", "error", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

func ensureClusterState(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), settings fsm.Settings, rotateEvery time.Duration, kr *keyring.Keyring) error {
	if err := sealClearKeys(ctx, f, apply, kr); err != nil {
		return err
	}
	keys := f.SigningKeys()
	if len(keys) == 0 || (rotateEvery > 0 && time.Since(keys[len(keys)-1].CreatedAt) >= rotateEvery) {
		if kr == nil && slices.ContainsFunc(keys, fsm.SigningKey.Sealed) {
			return errors.New("the signing keys are sealed and this leader has no keyring to seal a new one (start it with --keyring-file; see docs/security.md)")
		}
		k, err := tokens.GenerateKey()
		if err != nil {
			return err
		}
		sk := fsm.SigningKey{ID: k.ID, CreatedAt: time.Now().UTC().Round(0)}
		if err := sealSigningKey(kr, &sk, k.EncodePEM()); err != nil {
			return err
		}
		if _, err := apply(ctx, fsm.AddSigningKey{Key: sk}); err != nil {
			return err
		}
	}
	if f.Settings() != settings {
		if _, err := apply(ctx, fsm.SetSettings{Settings: settings}); err != nil {
			return err
		}
	}
	return nil
}

// sealSigningKey puts a new key's PEM into sk: sealed under the keyring,
// or in the clear on a cluster without one.
func sealSigningKey(kr *keyring.Keyring, sk *fsm.SigningKey, pem []byte) error {
	if kr == nil {
		sk.PEM = pem
		return nil
	}
	sealed, err := kr.Seal(pem, sk.SealAAD())
	if err != nil {
		return fmt.Errorf("seal signing key %s: %w", sk.ID, err)
	}
	sk.PEM, sk.SealKeyID, sk.Nonce, sk.Ciphertext = nil, sealed.KeyID, sealed.Nonce, sealed.Ciphertext
	return nil
}

// openSigningKey parses a replicated key, opening it first if sealed.
func openSigningKey(kr *keyring.Keyring, k fsm.SigningKey) (tokens.Key, error) {
	pem := k.PEM
	if k.Sealed() {
		var err error
		if pem, err = kr.Open(keyring.Sealed{KeyID: k.SealKeyID, Nonce: k.Nonce, Ciphertext: k.Ciphertext}, k.SealAAD()); err != nil {
			return tokens.Key{}, fmt.Errorf("sealed with keyring key %s: %w", k.SealKeyID, err)
		}
	}
	return tokens.ParsePEM(pem)
}

// sealClearKeys seals the keys a cluster kept in the clear (it ran
// without a keyring, or before keys were sealed), once its leader has one.
func sealClearKeys(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), kr *keyring.Keyring) error {
	if kr == nil {
		return nil
	}
	var sealed []fsm.SigningKey
	for _, k := range f.SigningKeys() {
		if k.Sealed() {
			continue
		}
		sk := fsm.SigningKey{ID: k.ID, CreatedAt: k.CreatedAt}
		if err := sealSigningKey(kr, &sk, k.PEM); err != nil {
			return err
		}
		sealed = append(sealed, sk)
	}
	if len(sealed) == 0 {
		return nil
	}
	_, err := apply(ctx, fsm.SealSigningKeys{Keys: sealed})
	return err
}
