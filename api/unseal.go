package api

import (
	"fmt"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/keyring"
)

// What a node cannot unseal. Signing keys and credentials enter the state
// sealed under the cluster keyring, so a backup restored onto nodes
// without that keyring (or with another) holds secrets they cannot open:
// the restore answer names each, with the keyring key it needs, rather
// than leave the first agent's callback to find out.

// UnsealedItem is one sealed secret this node cannot open.
type UnsealedItem struct {
	// Name is the signing key's id, or the credential's kind/scope/id[/agent].
	Name string `json:"name"`
	// KeyID is the keyring key it was sealed with.
	KeyID string `json:"key_id"`
	Error string `json:"error"`
}

// UnsealReport lists the sealed secrets of the state this node cannot open.
type UnsealReport struct {
	SigningKeys []UnsealedItem `json:"signing_keys,omitempty"`
	Credentials []UnsealedItem `json:"credentials,omitempty"`
}

// RestoreAnswer is the answer of POST /v1/cluster/restore.
type RestoreAnswer struct {
	cluster.RestoreInfo
	// Unsealable, if present, names what the restored state holds sealed
	// that this node's keyring cannot open.
	Unsealable *UnsealReport `json:"unsealable,omitempty"`
}

// unsealReport tries every sealed secret of the state with this node's
// keyring; nil when all open.
func (s *Server) unsealReport() *UnsealReport {
	f, kr := s.cfg.Node.FSM(), s.cfg.Keyring
	var r UnsealReport
	for _, k := range f.SigningKeys() {
		if !k.Sealed() {
			continue
		}
		if _, err := kr.Open(keyring.Sealed{KeyID: k.SealKeyID, Nonce: k.Nonce, Ciphertext: k.Ciphertext}, k.SealAAD()); err != nil {
			r.SigningKeys = append(r.SigningKeys, UnsealedItem{Name: k.ID, KeyID: k.SealKeyID, Error: err.Error()})
		}
	}
	for _, cr := range f.Credentials() {
		if _, err := kr.Open(keyring.Sealed{KeyID: cr.KeyID, Nonce: cr.Nonce, Ciphertext: cr.Ciphertext}, cr.AAD()); err != nil {
			name := fmt.Sprintf("%s/%s/%s", cr.Kind, cr.Scope, cr.ScopeID)
			if cr.AgentType != "" {
				name += "/" + cr.AgentType
			}
			r.Credentials = append(r.Credentials, UnsealedItem{Name: name, KeyID: cr.KeyID, Error: err.Error()})
		}
	}
	if len(r.SigningKeys) == 0 && len(r.Credentials) == 0 {
		return nil
	}
	s.log.Error("the state holds sealed secrets this node's keyring cannot open: give every node the keyring that sealed them (--keyring-file)",
		"signing_keys", len(r.SigningKeys), "credentials", len(r.Credentials))
	return &r
}
