package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"
)

func apiToken(id, secret, scope string) APIToken {
	return APIToken{ID: id, Hash: HashAPIToken(secret), Scope: scope, Subject: "s-" + id, CreatedAt: t0}
}

func TestAPITokensCreateLookupRevoke(t *testing.T) {
	a := newApplier(t)
	if r := a.apply(CreateAPIToken{Token: apiToken("k1", "secret-one", TokenScopeUser)}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := a.apply(CreateAPIToken{Token: apiToken("k1", "secret-one", TokenScopeUser)}); r.Err != nil || !r.Unchanged {
		t.Fatalf("a retried create = %+v, want duplicate", r)
	}
	if r := a.apply(CreateAPIToken{Token: apiToken("k2", "secret-one", TokenScopeUser)}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("another id with the same hash = %v, want ErrExists", r.Err)
	}
	got, ok := a.f.LookupAPIToken("secret-one", t0)
	if !ok || got.ID != "k1" || got.Subject != "s-k1" {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}
	if _, ok := a.f.LookupAPIToken("secret-two", t0); ok {
		t.Fatal("an unknown token was found")
	}
	exp := apiToken("k3", "secret-three", TokenScopeAdmin)
	exp.ExpiresAt = t0.Add(time.Hour)
	a.apply(CreateAPIToken{Token: exp})
	if _, ok := a.f.LookupAPIToken("secret-three", t0.Add(time.Hour)); ok {
		t.Fatal("an expired token was accepted")
	}
	if r := a.apply(RevokeAPIToken{ID: "k1", At: t0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, ok := a.f.LookupAPIToken("secret-one", t0); ok {
		t.Fatal("a revoked token was accepted")
	}
	if r := a.apply(RevokeAPIToken{ID: "k1", At: t0}); !r.Unchanged {
		t.Fatal("revoking twice is not a no-op")
	}
	if r := a.apply(RevokeAPIToken{ID: "nope", At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("revoking an unknown token = %v", r.Err)
	}
	if l := a.f.APITokens(); len(l) != 2 || l[0].RevokedAt.IsZero() {
		t.Fatalf("APITokens = %+v", l)
	}
}

func TestBootstrapTokenOnlyOnce(t *testing.T) {
	a := newApplier(t)
	b := apiToken("boot", "first-secret", TokenScopeAdmin)
	b.Bootstrap = true
	if r := a.apply(CreateAPIToken{Token: b}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if !a.f.HasBootstrapToken() {
		t.Fatal("HasBootstrapToken = false")
	}
	other := apiToken("boot2", "second-secret", TokenScopeAdmin)
	other.Bootstrap = true
	if r := a.apply(CreateAPIToken{Token: other}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("a second bootstrap token = %v, want ErrExists", r.Err)
	}
	a.apply(RevokeAPIToken{ID: "boot", At: t0})
	if r := a.apply(CreateAPIToken{Token: other}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("a bootstrap token after revoking the first = %v, want ErrExists", r.Err)
	}
	user := apiToken("u", "user-secret", TokenScopeUser)
	user.Bootstrap = true
	if r := a.apply(CreateAPIToken{Token: user}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("a user bootstrap token = %v, want ErrInvalid", r.Err)
	}
}

func TestAPITokensSurviveSnapshotAsHashesOnly(t *testing.T) {
	a := newApplier(t)
	tok := apiToken("k1", "the-token-itself", TokenScopeUser)
	tok.Projects = []string{"p1"}
	a.apply(CreateAPIToken{Token: tok})
	a.apply(RevokeAPIToken{ID: "k1", At: t0})
	a.apply(CreateAPIToken{Token: apiToken("k2", "another-token", TokenScopeAdmin)})
	snap := snapshotBytes(t, a.f)
	if bytes.Contains(snap, []byte("the-token-itself")) {
		t.Fatal("the snapshot holds a token")
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.APITokens(), a.f.APITokens(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored tokens\n%+v\nwant\n%+v", got, want)
	}
	if _, ok := restored.LookupAPIToken("another-token", t0); !ok {
		t.Fatal("a restored token is refused")
	}
}

func TestAPITokenCommandsRoundTrip(t *testing.T) {
	for _, c := range []Command{CreateAPIToken{Token: apiToken("k", "s", TokenScopeUser)}, RevokeAPIToken{ID: "k", At: t0}} {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if CommandType(b[0])&IgnoreUnknown == 0 {
			t.Fatalf("%T does not carry IgnoreUnknown", c)
		}
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("Decode(%T) = %+v, %v", c, got, err)
		}
	}
}

// BenchmarkLookupAPIToken is the per-request cost of authenticating a
// replicated token with the table full (MaxLiveAPITokens live tokens):
// every record is compared, so it does not depend on which one matches.
func BenchmarkLookupAPIToken(b *testing.B) {
	a := newApplier(b)
	for i := range MaxLiveAPITokens {
		a.apply(CreateAPIToken{Token: apiToken(fmt.Sprintf("k%d", i), fmt.Sprintf("secret-%d", i), TokenScopeUser)})
	}
	b.ResetTimer()
	for i := range b.N {
		if _, ok := a.f.LookupAPIToken(fmt.Sprintf("secret-%d", i%MaxLiveAPITokens), t0); !ok {
			b.Fatal("not found")
		}
	}
}
