package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sealedCredential is a credential as the leader commits it; the
// "ciphertext" here is only bytes of the right length (the FSM never
// decrypts).
func sealedCredential(ref CredentialRef, fill byte) Credential {
	return Credential{CredentialRef: ref, KeyID: "k-1", Nonce: bytes.Repeat([]byte{fill}, 12),
		Ciphertext: bytes.Repeat([]byte{fill}, 40), Fingerprint: "hmac-sha256:0011"}
}

var (
	gitRef   = CredentialRef{Kind: CredentialGitToken, Scope: CredentialProject, ScopeID: "p1"}
	agentRef = CredentialRef{Kind: CredentialAgentKey, Scope: CredentialUser, ScopeID: "u1", AgentType: "claude-code"}
)

func TestSetCredentialCreatesAndReplaces(t *testing.T) {
	a := newApplier(t)
	t1 := t0.Add(time.Minute)
	if r := a.apply(SetCredential{Credential: sealedCredential(gitRef, 1), At: t0}); r.Err != nil {
		t.Fatalf("SetCredential = %v", r.Err)
	}
	c, ok := a.f.Credential(gitRef)
	if !ok || !c.CreatedAt.Equal(t0) || !c.UpdatedAt.Equal(t0) || c.Ciphertext[0] != 1 {
		t.Fatalf("Credential = %+v, %v", c, ok)
	}
	r := a.apply(SetCredential{Credential: sealedCredential(gitRef, 2), At: t1})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	c, _ = a.f.Credential(gitRef)
	if !c.CreatedAt.Equal(t0) || !c.UpdatedAt.Equal(t1) || c.Ciphertext[0] != 2 {
		t.Fatalf("replaced credential = %+v, want created %v updated %v", c, t0, t1)
	}
	a.apply(SetCredential{Credential: sealedCredential(agentRef, 3), At: t1})
	if got := a.f.Credentials(); len(got) != 2 || got[0].Kind != CredentialAgentKey || got[1].Kind != CredentialGitToken {
		t.Fatalf("Credentials = %+v, want the agent key then the git token", got)
	}
	other := agentRef
	other.AgentType = "codex"
	if _, ok := a.f.Credential(other); ok {
		t.Fatal("an agent key of another agent type found")
	}
}

func TestDeleteCredential(t *testing.T) {
	a := newApplier(t)
	a.apply(SetCredential{Credential: sealedCredential(agentRef, 1), At: t0})
	if r := a.apply(DeleteCredential{Ref: agentRef}); r.Err != nil {
		t.Fatalf("DeleteCredential = %v", r.Err)
	}
	if _, ok := a.f.Credential(agentRef); ok {
		t.Fatal("deleted credential still there")
	}
	if r := a.apply(DeleteCredential{Ref: agentRef}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("second DeleteCredential = %v, want ErrNotFound", r.Err)
	}
}

func TestSetCredentialRefusesMalformed(t *testing.T) {
	cases := map[string]func(c *Credential){
		"unknown kind":          func(c *Credential) { c.Kind = "password" },
		"git token of a user":   func(c *Credential) { c.Scope = CredentialUser },
		"git token agent type":  func(c *Credential) { c.AgentType = "claude-code" },
		"empty scope id":        func(c *Credential) { c.ScopeID = "" },
		"scope id with a space": func(c *Credential) { c.ScopeID = "p 1" },
		"no key id":             func(c *Credential) { c.KeyID = "" },
		"short nonce":           func(c *Credential) { c.Nonce = c.Nonce[:8] },
		"no ciphertext":         func(c *Credential) { c.Ciphertext = c.Ciphertext[:16] },
		"huge ciphertext":       func(c *Credential) { c.Ciphertext = make([]byte, MaxCredentialSecret+17) },
		"host with newline":     func(c *Credential) { c.Host = "a\nb" },
	}
	for name, mod := range cases {
		a := newApplier(t)
		c := sealedCredential(gitRef, 1)
		mod(&c)
		if r := a.apply(SetCredential{Credential: c, At: t0}); !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("%s: SetCredential = %v, want ErrInvalid", name, r.Err)
		}
		if len(a.f.Credentials()) != 0 {
			t.Errorf("%s: a refused credential was stored", name)
		}
	}
	a := newApplier(t)
	noAgent := sealedCredential(agentRef, 1)
	noAgent.AgentType = ""
	if r := a.apply(SetCredential{Credential: noAgent, At: t0}); !errors.Is(r.Err, ErrInvalid) {
		t.Errorf("agent key without agent type = %v, want ErrInvalid", r.Err)
	}
}

func TestCredentialsSurviveSnapshot(t *testing.T) {
	old := newApplier(t)
	submit(old, "t1")
	oldSnap := snapshotBytes(t, old.f)
	if bytes.Contains(oldSnap, []byte(`"credentials"`)) {
		t.Fatal("a state without credentials writes the field")
	}
	a := newApplier(t)
	submit(a, "t1")
	a.apply(SetCredential{Credential: sealedCredential(gitRef, 1), At: t0})
	withHost := sealedCredential(agentRef, 2)
	withHost.SecretKind = "oauth-token"
	a.apply(SetCredential{Credential: withHost, At: t0.Add(time.Second)})
	snap := snapshotBytes(t, a.f)
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got, want := restored.Credentials(), a.f.Credentials(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored credentials\n%+v\nwant\n%+v", got, want)
	}
	if !bytes.Equal(snapshotBytes(t, restored), snap) {
		t.Fatal("restored state encodes differently")
	}
	if err := restored.Restore(io.NopCloser(bytes.NewReader(oldSnap))); err != nil || len(restored.Credentials()) != 0 {
		t.Fatalf("Restore(old) = %v, credentials %d", err, len(restored.Credentials()))
	}
	// A snapshot whose credential is malformed is refused whole.
	bad := bytes.Replace(snap, []byte(`"scope_id":"p1"`), []byte(`"scope_id":""`), 1)
	if bytes.Equal(bad, snap) {
		t.Fatal("test setup: scope id not found in the snapshot")
	}
	if err := New().Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("Restore of a snapshot with a malformed credential succeeded")
	}
}

func TestCredentialCommandsRoundTripAndAreSkippable(t *testing.T) {
	for _, c := range []Command{
		SetCredential{Credential: sealedCredential(gitRef, 1), At: t0},
		DeleteCredential{Ref: agentRef},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if CommandType(b[0])&IgnoreUnknown == 0 {
			t.Errorf("%T: type byte %#x lacks IgnoreUnknown", c, b[0])
		}
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("Decode(Encode(%T)) = %#v, %v", c, got, err)
		}
	}
}

func TestCredentialAADNamesTheCredential(t *testing.T) {
	other := gitRef
	other.ScopeID = "p2"
	if bytes.Equal(gitRef.AAD(), other.AAD()) || !strings.HasPrefix(string(agentRef.AAD()), "tdf credential v1") {
		t.Fatal("AAD does not name the credential")
	}
}
