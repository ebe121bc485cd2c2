package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSealOpen(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	secret, aad := []byte("ghp_0123456789abcdef"), []byte("git-token/project/p1")
	s, err := k.Seal(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != k.ActiveID() || len(s.Nonce) != NonceLen || len(s.Ciphertext) != len(secret)+Overhead {
		t.Fatalf("sealed = key %s nonce %d ciphertext %d", s.KeyID, len(s.Nonce), len(s.Ciphertext))
	}
	if bytes.Contains(s.Ciphertext, secret) {
		t.Fatal("ciphertext holds the secret")
	}
	got, err := k.Open(s, aad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(s, []byte("git-token/project/p2")); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open with other aad = %v, want ErrOpen", err)
	}
	bad := s
	bad.Ciphertext = append([]byte(nil), s.Ciphertext...)
	bad.Ciphertext[0] ^= 1
	if _, err := k.Open(bad, aad); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open tampered = %v, want ErrOpen", err)
	}
	s2, _ := k.Seal(secret, aad)
	if bytes.Equal(s2.Nonce, s.Nonce) || bytes.Equal(s2.Ciphertext, s.Ciphertext) {
		t.Fatal("two seals of one secret are equal")
	}
	other, _ := Generate()
	if _, err := other.Open(s, aad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open by another keyring = %v, want ErrUnknownKey", err)
	}
}

func TestRotateOpensOld(t *testing.T) {
	k, _ := Generate()
	old, _ := k.Seal([]byte("one"), nil)
	first := k.ActiveID()
	if err := k.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	if k.ActiveID() == first || k.Len() != 2 {
		t.Fatalf("after Rotate: active %s (was %s), %d keys", k.ActiveID(), first, k.Len())
	}
	if got, err := k.Open(old, nil); err != nil || string(got) != "one" {
		t.Fatalf("Open(old) = %q, %v", got, err)
	}
	if s, _ := k.Seal([]byte("two"), nil); s.KeyID != k.ActiveID() {
		t.Fatalf("Seal used %s, want the new key", s.KeyID)
	}
}

func TestNilKeyring(t *testing.T) {
	var k *Keyring
	if _, err := k.Seal([]byte("x"), nil); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Seal = %v", err)
	}
	if _, err := k.Open(Sealed{}, nil); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Open = %v", err)
	}
	if k.Fingerprint([]byte("x")) != "" || k.ActiveID() != "" || k.String() != "keyring(none)" {
		t.Fatal("nil keyring answers")
	}
}

func TestFingerprint(t *testing.T) {
	k, _ := Generate()
	a, b := k.Fingerprint([]byte("secret-a")), k.Fingerprint([]byte("secret-b"))
	if a == b || a != k.Fingerprint([]byte("secret-a")) || !strings.HasPrefix(a, "hmac-sha256:") {
		t.Fatalf("fingerprints %s %s", a, b)
	}
	other, _ := Generate()
	if other.Fingerprint([]byte("secret-a")) == a {
		t.Fatal("two keyrings fingerprint alike")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.json")
	k, _ := Generate()
	_ = k.Rotate(time.Now())
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := k.Save(path); err == nil {
		t.Fatal("Save over an existing file succeeded")
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := k.Seal([]byte("s"), nil)
	if got, err := l.Open(s, nil); err != nil || string(got) != "s" || l.ActiveID() != k.ActiveID() {
		t.Fatalf("loaded keyring: Open = %q, %v; active %s want %s", got, err, l.ActiveID(), k.ActiveID())
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v %s", l, l, l, l), string(k.raw[0][:4])) {
		t.Fatal("printing a keyring shows key bytes")
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load of a group-readable file = %v, want a chmod hint", err)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":   ``,
		"garbage": `not json`,
		"version": `{"version":2,"keys":[]}`,
		"nokeys":  `{"version":1,"keys":[]}`,
		"short":   `{"version":1,"keys":[{"id":"k1","key":"AAAA"}]}`,
		"base64":  `{"version":1,"keys":[{"id":"k1","key":"!!"}]}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil {
			t.Errorf("Load(%s) succeeded", name)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestRotateAndReplaceFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	k, _ := Generate()
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	old, _ := k.Seal([]byte("old"), nil)
	if err := k.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := k.Replace(path); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path)
	if err != nil || l.Len() != 2 || l.ActiveID() != k.ActiveID() {
		t.Fatalf("replaced file: %v, %v", l, err)
	}
	if got, err := l.Open(old, nil); err != nil || string(got) != "old" {
		t.Fatalf("the old key is gone: %q, %v", got, err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
}
