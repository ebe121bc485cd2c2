package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestSealSigningKeysReplacesClearKeysOnly(t *testing.T) {
	a := newApplier(t)
	a.apply(AddSigningKey{Key: SigningKey{ID: "k1", PEM: []byte("clear-one"), CreatedAt: t0}})
	a.apply(AddSigningKey{Key: SigningKey{ID: "k2", PEM: []byte("clear-two"), CreatedAt: t0.Add(time.Hour)}})
	sealed := func(id string, fill byte) SigningKey {
		return SigningKey{ID: id, SealKeyID: "kr1", Nonce: bytes.Repeat([]byte{fill}, 12), Ciphertext: []byte{fill, fill}}
	}
	if r := a.apply(SealSigningKeys{Keys: []SigningKey{{ID: "k1", PEM: []byte("x")}}}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("an unsealed key in SealSigningKeys = %v, want ErrInvalid", r.Err)
	}
	if r := a.apply(SealSigningKeys{Keys: []SigningKey{sealed("k1", 1), sealed("gone", 2)}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	keys := a.f.SigningKeys()
	if !keys[0].Sealed() || len(keys[0].PEM) != 0 || !keys[0].CreatedAt.Equal(t0) || keys[1].Sealed() || len(keys) != 2 {
		t.Fatalf("keys = %+v, want k1 sealed (its time kept), k2 clear", keys)
	}
	// A sealed key is never replaced again.
	a.apply(SealSigningKeys{Keys: []SigningKey{sealed("k1", 3)}})
	if a.f.SigningKeys()[0].Ciphertext[0] != 1 {
		t.Fatal("a sealed key was re-sealed")
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.f)))); err != nil || !restored.SigningKeys()[0].Sealed() {
		t.Fatalf("restore = %v, keys %+v", err, restored.SigningKeys())
	}
	if bytes.Contains(snapshotBytes(t, a.f), []byte("clear-one")) || bytes.Contains(snapshotBytes(t, a.f), []byte("Y2xlYXItb25l")) {
		t.Fatal("the snapshot still holds the sealed key's clear PEM")
	}
}
