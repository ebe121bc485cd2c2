package api_test

import (
	"encoding/json"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// A node without a signing key (just restarted, before it replays its log)
// answers 503, never an empty key set an agent would cache; with a key, the
// set is served and cacheable.
func TestJWKSWithoutKeyIsUnavailable(t *testing.T) {
	var keys []tokens.Key
	is := &tokens.Issuer{URL: "http://cp.invalid", Keys: func() []tokens.Key { return keys }}
	srv, err := api.New(api.Config{Node: &fakeCluster{f: fsm.New()}, Tokens: is})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	r := serveFake(t, h, "GET", "/.well-known/jwks.json", nil)
	checkError(t, "jwks without a key", r, 503, api.CodeUnavailable, "catching up")
	if r.Header.Get("Retry-After") == "" || r.Header.Get("Cache-Control") == "max-age=300" {
		t.Errorf("jwks without a key: headers %v", r.Header)
	}

	k, err := tokens.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys = []tokens.Key{k}
	r = serveFake(t, h, "GET", "/.well-known/jwks.json", nil)
	var set tokens.JWKS
	if r.Status != 200 || json.Unmarshal(r.Body, &set) != nil || len(set.Keys) != 1 || set.Keys[0].Kid != k.ID {
		t.Fatalf("jwks with a key = %d %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
}
