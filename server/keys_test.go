package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
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
	if err := ensureClusterState(ctx, f, apply, settings, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.SigningKeys()) != 1 || f.Settings() != settings {
		t.Fatalf("first duty: %d keys, settings %+v", len(f.SigningKeys()), f.Settings())
	}
	// A fresh key is not rotated.
	if err := ensureClusterState(ctx, f, apply, settings, time.Hour, nil); err != nil || len(f.SigningKeys()) != 1 {
		t.Fatalf("fresh key rotated: %d keys, %v", len(f.SigningKeys()), err)
	}
	kc := &keyCache{fsm: f, log: hclog.NewNullLogger()}
	first := kc.Keys()[0].ID
	// With a zero rotation period every pass rotates.
	for i := 0; i < 4; i++ {
		if err := ensureClusterState(ctx, f, apply, settings, time.Nanosecond, nil); err != nil {
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

// TestSigningKeysSealedByAKeyringLeader: a leader with the keyring seals
// new keys and the clear keys a keyring-less past left; a node without the
// keyring cannot use sealed keys, and a leader without it adds no clear
// key beside sealed ones.
func TestSigningKeysSealedByAKeyringLeader(t *testing.T) {
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
	ctx, settings := context.Background(), fsm.DefaultSettings()
	if err := ensureClusterState(ctx, f, apply, settings, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	clear := f.SigningKeys()[0]
	if clear.Sealed() || len(clear.PEM) == 0 {
		t.Fatal("a keyring-less leader's key is not in the clear")
	}
	kr, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureClusterState(ctx, f, apply, settings, time.Nanosecond, kr); err != nil {
		t.Fatal(err)
	}
	keys := f.SigningKeys()
	if len(keys) != 2 || keys[0].ID != clear.ID || !keys[0].CreatedAt.Equal(clear.CreatedAt) {
		t.Fatalf("keys = %+v, want the old key (sealed) and a new one", keys)
	}
	for _, k := range keys {
		if !k.Sealed() || len(k.PEM) != 0 || k.SealKeyID != kr.ActiveID() {
			t.Fatalf("key %s is not sealed under the keyring", k.ID)
		}
	}
	if got := (&keyCache{fsm: f, log: hclog.NewNullLogger(), keyring: kr}).Keys(); len(got) != 2 || got[0].ID != clear.ID {
		t.Fatalf("a node with the keyring opens %d keys", len(got))
	}
	if got := (&keyCache{fsm: f, log: hclog.NewNullLogger()}).Keys(); len(got) != 0 {
		t.Fatalf("a node without the keyring uses %d sealed keys", len(got))
	}
	if err := ensureClusterState(ctx, f, apply, settings, time.Nanosecond, nil); err == nil || len(f.SigningKeys()) != 2 {
		t.Fatalf("a keyring-less leader rotated beside sealed keys (%v, %d keys)", err, len(f.SigningKeys()))
	}
}

// A leader whose admin-token file holds a token that lost the bootstrap to
// another leader's removes it; the committed one's file stays.
func TestStaleAdminTokenFileRemoved(t *testing.T) {
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
	winner, loser := t.TempDir(), t.TempDir()
	if err := writeSecretFile(filepath.Join(loser, AdminTokenFile), "tdf_lost-the-race"); err != nil {
		t.Fatal(err)
	}
	bootstrapAdmin(f, apply, winner, hclog.NewNullLogger())(context.Background(), 1)
	if !f.HasBootstrapToken() {
		t.Fatal("no bootstrap token committed")
	}
	bootstrapAdmin(f, apply, loser, hclog.NewNullLogger())(context.Background(), 2)
	if _, err := os.Stat(filepath.Join(loser, AdminTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("the losing leader's token file is still there (%v)", err)
	}
	tok, err := ReadAdminToken(winner)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.LookupAPIToken(tok, time.Now()); !ok {
		t.Fatal("the winner's token is not the committed one")
	}
}
