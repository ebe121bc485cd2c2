package fsm

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// appCredential is a git token minted from a GitHub App installation: the
// sealed secret stands for the app's private key.
func appCredential() Credential {
	c := sealedCredential(gitRef, 7)
	c.GitHubApp = GitHubApp{AppID: 123, InstallationID: 456, APIBaseURL: "https://ghe.example/api/v3"}
	return c
}

func TestGitHubAppCredentialStoredAndSnapshotted(t *testing.T) {
	a := newApplier(t)
	if r := a.apply(SetCredential{Credential: appCredential(), At: t0}); r.Err != nil {
		t.Fatalf("SetCredential(GitHub App) = %v", r.Err)
	}
	got, ok := a.f.Credential(gitRef)
	if !ok || !got.IsGitHubApp() || got.GitHubApp != appCredential().GitHubApp {
		t.Fatalf("Credential = %+v, %v", got, ok)
	}
	snap := snapshotBytes(t, a.f)
	if !bytes.Contains(snap, []byte(`"github_app":{"app_id":123,"installation_id":456`)) {
		t.Fatalf("the snapshot lacks the app's metadata: %s", snap)
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(restored.Credentials(), a.f.Credentials()) {
		t.Fatalf("restored %+v, want %+v", restored.Credentials(), a.f.Credentials())
	}
	// Replacing it with a static token drops the app: records are
	// replaced whole.
	a.apply(SetCredential{Credential: sealedCredential(gitRef, 8), At: t0})
	if got, _ := a.f.Credential(gitRef); got.IsGitHubApp() {
		t.Fatalf("a static token replacing an app credential kept %+v", got.GitHubApp)
	}
	// A static token writes no github_app field (older snapshots and
	// commands stay byte for byte as they were).
	if b, _ := Encode(SetCredential{Credential: sealedCredential(gitRef, 1), At: t0}); bytes.Contains(b, []byte("github_app")) {
		t.Fatalf("a static token's command carries github_app: %s", b)
	}
}

func TestGitHubAppCredentialCommandRoundTrips(t *testing.T) {
	c := SetCredential{Credential: appCredential(), At: t0}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Decode(Encode) = %#v, %v", got, err)
	}
}

func TestGitHubAppCredentialRefusesMalformed(t *testing.T) {
	cases := map[string]func(c *Credential){
		"no app id":            func(c *Credential) { c.GitHubApp.AppID = 0 },
		"negative app id":      func(c *Credential) { c.GitHubApp.AppID = -1 },
		"no installation id":   func(c *Credential) { c.GitHubApp.InstallationID = 0 },
		"base url with spaces": func(c *Credential) { c.GitHubApp.APIBaseURL = "https://a b" },
		"on an agent key":      func(c *Credential) { c.CredentialRef = agentRef },
	}
	for name, mod := range cases {
		a := newApplier(t)
		c := appCredential()
		mod(&c)
		if r := a.apply(SetCredential{Credential: c, At: t0}); !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("%s: SetCredential = %v, want ErrInvalid", name, r.Err)
		}
		if len(a.f.Credentials()) != 0 {
			t.Errorf("%s: a refused credential was stored", name)
		}
	}
}
