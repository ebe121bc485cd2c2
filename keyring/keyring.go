// Package keyring holds the cluster's credential encryption keys: the
// AES-256-GCM keys under which the leader seals credentials before they
// enter the raft log, and with which a node opens them to hand them out.
//
// A keyring lives in a file of its own on every node (mode 0600), never in
// the raft log or snapshots: a backup (tdf snapshot save), a snapshot file
// or a copied raft.db holds ciphertext only. All nodes hold the same file
// (docs/security.md): `tdf keyring init` writes one, the operator copies it
// to every node. The
// newest key seals; every key opens what it sealed (its id travels with the
// ciphertext), so a key can be added without re-sealing old credentials.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// KeyLen is the length of every key: AES-256.
const KeyLen = 32

// NonceLen is the GCM nonce length.
const NonceLen = 12

// Overhead is what sealing adds to a plaintext's length (the GCM tag).
const Overhead = 16

// ErrNoKeyring is the error of every operation on a nil keyring: the node
// was started without one.
var ErrNoKeyring = errors.New("keyring: this node has no keyring (start it with --keyring-file; see docs/security.md)")

// ErrUnknownKey: a sealed value names a key this keyring does not hold.
var ErrUnknownKey = errors.New("keyring: sealed with a key this keyring does not hold")

// ErrOpen: a sealed value does not authenticate under its key (corrupt,
// or moved to another record).
var ErrOpen = errors.New("keyring: sealed value does not authenticate")

// Sealed is a sealed secret: only ciphertext and what is needed to open it.
type Sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

type key struct {
	id      string
	created time.Time
	aead    cipher.AEAD
	// fp keys the fingerprints of what this key seals.
	fp []byte
}

// Keyring is a set of keys, the newest sealing. It never prints its keys.
type Keyring struct {
	keys []key
	raw  [][]byte // for Save only
}

// String keeps keys out of logs and error messages.
func (k *Keyring) String() string {
	if k == nil {
		return "keyring(none)"
	}
	return fmt.Sprintf("keyring(%d keys, active %s)", len(k.keys), k.ActiveID())
}

// GoString is String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// Generate returns a keyring with one new random key.
func Generate() (*Keyring, error) {
	k := &Keyring{}
	if err := k.Rotate(time.Now()); err != nil {
		return nil, err
	}
	return k, nil
}

// Rotate adds a new random key, which seals from now on.
func (k *Keyring) Rotate(now time.Time) error {
	raw := make([]byte, KeyLen)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("keyring: random key: %w", err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("keyring: random key id: %w", err)
	}
	return k.add("k-"+hex.EncodeToString(id[:]), raw, now.UTC().Truncate(time.Second))
}

func (k *Keyring) add(id string, raw []byte, created time.Time) error {
	if len(raw) != KeyLen {
		return fmt.Errorf("keyring: key %s is %d bytes, want %d", id, len(raw), KeyLen)
	}
	if id == "" {
		return fmt.Errorf("keyring: a key has no id")
	}
	for _, x := range k.keys {
		if x.id == id {
			return fmt.Errorf("keyring: key id %s appears twice", id)
		}
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte("tdf credential fingerprint v1"))
	k.keys = append(k.keys, key{id: id, created: created, aead: aead, fp: mac.Sum(nil)})
	k.raw = append(k.raw, append([]byte(nil), raw...))
	return nil
}

// ActiveID is the id of the sealing key ("" for a nil keyring).
func (k *Keyring) ActiveID() string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return k.keys[len(k.keys)-1].id
}

// Len is the number of keys.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// Seal encrypts plaintext under the active key with a fresh random nonce.
// aad binds the ciphertext to where it is stored: opening it with other
// aad fails.
func (k *Keyring) Seal(plaintext, aad []byte) (Sealed, error) {
	if k.Len() == 0 {
		return Sealed{}, ErrNoKeyring
	}
	active := k.keys[len(k.keys)-1]
	nonce := make([]byte, NonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("keyring: random nonce: %w", err)
	}
	return Sealed{KeyID: active.id, Nonce: nonce, Ciphertext: active.aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// Open decrypts a sealed value with the key it names.
func (k *Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	if k.Len() == 0 {
		return nil, ErrNoKeyring
	}
	for _, x := range k.keys {
		if x.id != s.KeyID {
			continue
		}
		if len(s.Nonce) != NonceLen {
			return nil, ErrOpen
		}
		out, err := x.aead.Open(nil, s.Nonce, s.Ciphertext, aad)
		if err != nil {
			return nil, ErrOpen
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w (key %s)", ErrUnknownKey, s.KeyID)
}

// Fingerprint identifies a secret without revealing it: an HMAC under a key
// derived from the active key, so that it cannot be checked against
// guesses without the keyring. Two credentials with the same fingerprint
// hold the same secret.
func (k *Keyring) Fingerprint(secret []byte) string {
	if k.Len() == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, k.keys[len(k.keys)-1].fp)
	mac.Write(secret)
	return "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil)[:12])
}

// fileFormat is the keyring file.
type fileFormat struct {
	Version int       `json:"version"`
	Keys    []fileKey `json:"keys"`
}

type fileKey struct {
	ID      string    `json:"id"`
	Key     string    `json:"key"` // base64
	Created time.Time `json:"created_at"`
}

// maxFileSize bounds what Load reads.
const maxFileSize = 1 << 20

// Load reads a keyring file. It refuses a file that others than its owner
// may read or write.
func Load(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring file: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("keyring file %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("keyring file %s has mode %04o: others than its owner can reach it; chmod 600 %s", path, fi.Mode().Perm(), path)
	case fi.Size() > maxFileSize:
		return nil, fmt.Errorf("keyring file %s is %d bytes, more than a keyring", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring file: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("keyring file %s: not a keyring: %v", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("keyring file %s: version %d, this binary reads 1", path, f.Version)
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("keyring file %s holds no key", path)
	}
	k := &Keyring{}
	for i, fk := range f.Keys {
		raw, err := base64.StdEncoding.DecodeString(fk.Key)
		if err != nil {
			return nil, fmt.Errorf("keyring file %s: key %d (%s) is not base64", path, i+1, fk.ID)
		}
		if err := k.add(fk.ID, raw, fk.Created); err != nil {
			return nil, fmt.Errorf("keyring file %s: %w", path, err)
		}
	}
	return k, nil
}

// Replace writes the keyring over the file at path, atomically (a new
// file renamed over it), keeping mode 0600. Rotate then Replace adds a key
// without losing the old ones.
func (k *Keyring) Replace(path string) error {
	tmp := path + ".new"
	if err := k.Save(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keyring file: %w", err)
	}
	return nil
}

// Save writes the keyring to a new file with mode 0600; it never replaces
// an existing file (a lost key is lost credentials).
func (k *Keyring) Save(path string) error {
	if k.Len() == 0 {
		return ErrNoKeyring
	}
	f := fileFormat{Version: 1}
	for i, x := range k.keys {
		f.Keys = append(f.Keys, fileKey{ID: x.id, Key: base64.StdEncoding.EncodeToString(k.raw[i]), Created: x.created})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keyring file: %w", err)
	}
	if _, err := out.Write(append(data, '\n')); err != nil {
		out.Close()
		return fmt.Errorf("keyring file %s: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("keyring file %s: %w", path, err)
	}
	return out.Close()
}
