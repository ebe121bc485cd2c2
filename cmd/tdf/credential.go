package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
)

const credentialUsage = `usage:
  tdf credential set git-token project PROJECT [--secret-file FILE] [--username U] [--host H]
  tdf credential set git-token project PROJECT --github-app-id N --installation-id M [--api-base-url URL] [--secret-file KEY.pem]
  tdf credential set agent-key user|project ID AGENT_TYPE [--secret-file FILE] [--credential-kind api-key|oauth-token]
  tdf credential list [--kind K] [--scope S] [--id ID]
  tdf credential delete git-token project PROJECT
  tdf credential delete agent-key user|project ID AGENT_TYPE
The secret is read from --secret-file, or from standard input ("-", the
default), never from a flag: flags show in ps and shell history. With
--github-app-id the secret is the GitHub App's private key (PEM), and the
agent gets installation tokens minted with it.`

// runCredential sets, lists and deletes credentials (admin token).
func runCredential(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, credentialUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("credential "+args[0], flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "set":
		secretFile := fs.String("secret-file", "-", `file holding the secret ("-": standard input)`)
		var req api.CredentialRequest
		fs.StringVar(&req.CredentialKind, "credential-kind", "", "agent keys: api-key (default) or oauth-token")
		fs.StringVar(&req.Username, "username", "", "git tokens: the user name git presents (default x-access-token)")
		fs.StringVar(&req.Host, "host", "", "git tokens: the git host (default github.com)")
		app := githubAppFlags(fs)
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		path, err := credentialPath(fs.Args())
		if err != nil {
			return err
		}
		if err := app.check(fs.Args()[0]); err != nil {
			return err
		}
		if req.Secret, err = readSecret(*secretFile, os.Stdin); err != nil {
			return err
		}
		app.into(&req)
		var out struct {
			Credential api.CredentialView `json:"credential"`
		}
		if err := c.do(ctx, http.MethodPut, path, req, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out)
		}
		v := out.Credential
		fmt.Printf("set %s %s/%s%s (%sfingerprint %s, key %s)\n", v.Kind, v.Scope, v.ID, agentSuffix(v.AgentType), appNote(v), v.Fingerprint, v.KeyID)
		return nil
	case "delete":
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		path, err := credentialPath(fs.Args())
		if err != nil {
			return err
		}
		if err := c.do(ctx, http.MethodDelete, path, nil, nil, nil); err != nil {
			return err
		}
		fmt.Printf("deleted %s\n", strings.Join(fs.Args(), " "))
		return nil
	case "list":
		kind := fs.String("kind", "", "only this kind: git-token or agent-key")
		scope := fs.String("scope", "", "only this scope: project or user")
		id := fs.String("id", "", "only this project or user id")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		q := queryOf(map[string]string{"kind": *kind, "scope": *scope, "id": *id})
		var out struct {
			Credentials []api.CredentialView `json:"credentials"`
			Keyring     bool                 `json:"keyring"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/credentials?"+q.Encode(), nil, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out)
		}
		return printCredentials(out.Credentials, out.Keyring)
	}
	fmt.Fprintf(os.Stderr, "tdf credential: unknown command %q\n%s\n", args[0], credentialUsage)
	return errUsage
}

// credentialPath turns "KIND SCOPE ID [AGENT_TYPE]" into the API path.
func credentialPath(args []string) (string, error) {
	if len(args) < 3 || len(args) > 4 {
		return "", fmt.Errorf("want KIND SCOPE ID [AGENT_TYPE], got %d arguments\n%s", len(args), credentialUsage)
	}
	ref := fsm.CredentialRef{Kind: fsm.CredentialKind(args[0]), Scope: fsm.CredentialScope(args[1]), ScopeID: args[2]}
	if len(args) == 4 {
		ref.AgentType = args[3]
	}
	if err := ref.Validate(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, credentialUsage)
	}
	p := "/v1/credentials"
	for _, a := range args {
		p += "/" + url.PathEscape(a)
	}
	return p, nil
}

// readSecret reads the secret from a file or standard input, without its
// final line break.
func readSecret(path string, stdin io.Reader) (string, error) {
	r, what := stdin, "standard input"
	if path != "-" && path != "" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
		defer f.Close()
		r, what = f, path
	} else if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(os.Stderr, "reading the secret from standard input (end with Ctrl-D)")
		}
	}
	b, err := io.ReadAll(io.LimitReader(r, fsm.MaxCredentialSecret+2))
	if err != nil {
		return "", fmt.Errorf("reading the secret from %s: %w", what, err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("the secret read from %s is empty", what)
	case len(b) > fsm.MaxCredentialSecret:
		return "", fmt.Errorf("the secret read from %s is longer than %d bytes", what, fsm.MaxCredentialSecret)
	}
	return string(b), nil
}

func agentSuffix(a string) string {
	if a == "" {
		return ""
	}
	return " " + a
}

func printCredentials(cs []api.CredentialView, haveKeyring bool) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSCOPE\tID\tAGENT\tGITHUB APP\tFINGERPRINT\tKEY\tUPDATED")
	for _, v := range cs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Kind, v.Scope, v.ID, cmpDash(v.AgentType), cmpDash(appColumn(v)), v.Fingerprint, v.KeyID, v.UpdatedAt.Format(time.RFC3339))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !haveKeyring {
		fmt.Fprintln(os.Stderr, "warning: the node that answered has no keyring: it can neither set nor hand out credentials")
	}
	return nil
}

func cmpDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runKeyring writes a new keyring file (tdf keyring init) or adds a key
// to one (tdf keyring rotate).
func runKeyring(_ context.Context, args []string) error {
	if len(args) > 0 && args[0] == "rotate" {
		return rotateKeyring(args[1:])
	}
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(os.Stderr, "usage: tdf keyring init --out FILE | rotate --file FILE   (copy FILE to every node; see docs/security.md)")
		return errUsage
	}
	fs := flag.NewFlagSet("keyring init", flag.ContinueOnError)
	out := fs.String("out", "", "file to write (mode 0600; never overwritten)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("tdf keyring init needs --out FILE")
	}
	k, err := keyring.Generate()
	if err != nil {
		return err
	}
	if err := k.Save(*out); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: a keyring is never overwritten (its loss is the loss of every credential it sealed)", *out)
		}
		return err
	}
	fmt.Printf("wrote %s (key %s). Give every node the same file: %s in its data directory, or --keyring-file.\n", *out, k.ActiveID(), defaultKeyringName)
	return nil
}

// defaultKeyringName is the keyring file a node looks for in its data
// directory when --keyring-file is not given.
const defaultKeyringName = "keyring.json"

// loadNodeKeyring finds a node's keyring: --keyring-file (which must
// exist), else keyring.json in its data directory (if there). ok is false
// when there is none: the node runs, refusing credentials.
func loadNodeKeyring(path, dataDir string) (k *keyring.Keyring, from string, err error) {
	explicit := path != ""
	if !explicit {
		path = filepath.Join(dataDir, defaultKeyringName)
	}
	k, err = keyring.Load(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("--keyring-file: %w", err)
	}
	return k, path, nil
}

// devKeyring makes (once) the keyring tdf dev gives its three nodes.
func devKeyring(dataDir string) (string, error) {
	path := filepath.Join(dataDir, defaultKeyringName)
	if _, err := keyring.Load(path); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	k, err := keyring.Generate()
	if err != nil {
		return "", err
	}
	return path, k.Save(path)
}

// rotateKeyring adds a new sealing key to a keyring file, keeping the old
// ones (they still open what they sealed).
func rotateKeyring(args []string) error {
	fs := flag.NewFlagSet("keyring rotate", flag.ContinueOnError)
	file := fs.String("file", "", "the keyring file to add a key to")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("tdf keyring rotate needs --file FILE")
	}
	k, err := keyring.Load(*file)
	if err != nil {
		return err
	}
	if err := k.Rotate(time.Now()); err != nil {
		return err
	}
	if err := k.Replace(*file); err != nil {
		return err
	}
	fmt.Printf("%s: new sealing key %s (%d keys). Copy it to every node and restart them; until then, only nodes with the new file can open what is sealed under it.\n", *file, k.ActiveID(), k.Len())
	return nil
}
