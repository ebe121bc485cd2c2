package server

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// keyCache parses the FSM's replicated signing keys once per key set.
type keyCache struct {
	fsm  *fsm.FSM
	log  hclog.Logger
	mu   sync.Mutex
	ids  []string
	keys []tokens.Key
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
		parsed, err := tokens.ParsePEM(k.PEM)
		if err != nil {
			kc.log.Error("unusable signing key in the replicated state", "kid", k.ID, "error", err)
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
func clusterDuties(f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), cp *controlPlane, settings fsm.Settings, rotateEvery, errorRetention time.Duration, log hclog.Logger) func(context.Context, uint64) {
	return func(ctx context.Context, _ uint64) {
		for {
			wait := time.Minute
			err := cp.ensure(ctx, f, apply)
			if err == nil {
				err = ensureClusterState(ctx, f, apply, settings, rotateEvery)
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

func ensureClusterState(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), settings fsm.Settings, rotateEvery time.Duration) error {
	keys := f.SigningKeys()
	if len(keys) == 0 || (rotateEvery > 0 && time.Since(keys[len(keys)-1].CreatedAt) >= rotateEvery) {
		k, err := tokens.GenerateKey()
		if err != nil {
			return err
		}
		if _, err := apply(ctx, fsm.AddSigningKey{Key: fsm.SigningKey{ID: k.ID, PEM: k.EncodePEM(), CreatedAt: time.Now().UTC().Round(0)}}); err != nil {
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
