package server

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
)

// TestKeyRotationKeepsOldKeysForVerification: the leader adds a signing
// key when there is none and rotates it when it is old; the newest signs,
// older keys stay (verifying) until MaxSigningKeys pushes them out, and
// the cache parses each set once.
func TestKeyRotationKeepsOldKeysForVerification(t *testing.T) {
	f := fsm.New()
	idx := uint64(0)
	apply := func(_ context.Context, c fsm.Command) (*fsm.Result, error) {
		b, err := fsm.Encode(c)
		if err != nil {
			return nil, err
		}
		idx++
		return f.ApplyCommand(idx, b), nil
	}
	ctx := context.Background()
	settings := fsm.DefaultSettings()
	settings.MaxNodesPerUser = 3
	if err := ensureClusterState(ctx, f, apply, settings, time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(f.SigningKeys()) != 1 || f.Settings() != settings {
		t.Fatalf("first duty: %d keys, settings %+v", len(f.SigningKeys()), f.Settings())
	}
	// A fresh key is not rotated.
	if err := ensureClusterState(ctx, f, apply, settings, time.Hour); err != nil || len(f.SigningKeys()) != 1 {
		t.Fatalf("fresh key rotated: %d keys, %v", len(f.SigningKeys()), err)
	}
	kc := &keyCache{fsm: f, log: hclog.NewNullLogger()}
	first := kc.Keys()[0].ID
	// With a zero rotation period every pass rotates.
	for i := 0; i < 4; i++ {
		if err := ensureClusterState(ctx, f, apply, settings, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
	}
	keys := kc.Keys()
	if len(keys) != fsm.MaxSigningKeys {
		t.Fatalf("keys = %d, want %d", len(keys), fsm.MaxSigningKeys)
	}
	if keys[0].ID == first {
		t.Fatalf("the oldest key outlived %d rotations", 4)
	}
	if set := f.SigningKeys(); keys[len(keys)-1].ID != set[len(set)-1].ID {
		t.Fatalf("the newest key is not last")
	}
	if &kc.Keys()[0] != &keys[0] {
		t.Fatalf("the key cache parsed an unchanged set again")
	}
}
