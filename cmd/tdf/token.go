package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdf-project/tdf/api"
)

const tokenUsage = `usage:
  tdf token create --scope admin|user --subject ID [--projects P1,P2] [--ttl 720h]
  tdf token list
  tdf token revoke ID
  tdf token save [--addr URL] < TOKENFILE   remember a token for --addr (per-user file)
A new token is printed once; the cluster keeps only its hash. A revoked
token is refused by every node as soon as it has applied the revocation.
The client commands find their token in --token, TDF_TOKEN, or else the
per-user file (` + "`tdf token save`" + `; tdf dev fills it in), by --addr.`

// runToken creates, lists and revokes API tokens (admin token).
func runToken(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, tokenUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	addr := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "create":
		var req api.TokenRequest
		scope := fs.String("scope", "user", "admin, or user (acts only as --subject)")
		fs.StringVar(&req.Subject, "subject", "", "the user id a user token acts as, or the admin's name (required)")
		projects := fs.String("projects", "", "a user token may use only these projects, comma-separated (default: any)")
		fs.StringVar(&req.TTL, "ttl", "", "lifetime such as 720h (default: until revoked)")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if req.Subject == "" {
			return fmt.Errorf("--subject is required: the user id (or an admin's name) the token acts as")
		}
		req.Scope, req.Projects = api.Scope(*scope), splitList(*projects)
		var out api.TokenCreated
		if err := c.do(ctx, http.MethodPost, "/v1/tokens", req, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out)
		}
		fmt.Println(out.Token)
		fmt.Fprintf(os.Stderr, "created %s token %s for %s; it is shown only this once\n", out.Info.Scope, out.Info.ID, out.Info.Subject)
		return nil
	case "list":
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		var out struct {
			Tokens []api.TokenInfo `json:"tokens"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out)
		}
		return printTokens(out.Tokens)
	case "revoke":
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("token revoke takes one token id (see tdf token list)")
		}
		if err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(fs.Arg(0)), nil, nil, nil); err != nil {
			return err
		}
		fmt.Printf("revoked %s\n", fs.Arg(0))
		return nil
	case "save":
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if a, ok := os.LookupEnv("TDF_ADDR"); ok && !flagSet(fs, "addr") {
			*addr = a
		}
		tok, err := readSecret("-", os.Stdin)
		if err != nil {
			return err
		}
		path, err := saveClientToken(strings.TrimSpace(tok), *addr)
		if err != nil {
			return err
		}
		fmt.Printf("saved the token for %s in %s\n", *addr, path)
		return nil
	}
	fmt.Fprintln(os.Stderr, tokenUsage)
	return errUsage
}

func printTokens(list []api.TokenInfo) error {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCOPE\tSUBJECT\tPROJECTS\tCREATED\tEXPIRES\tREVOKED")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Scope, t.Subject, cmpOrDash(strings.Join(t.Projects, ",")),
			t.CreatedAt.Format(time.RFC3339), timeOrDash(t.ExpiresAt), timeOrDash(t.RevokedAt))
	}
	return tw.Flush()
}

func cmpOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// clientTokensFile is the per-user file of saved tokens: lines "URL TOKEN",
// mode 0600. TDF_CONFIG_DIR moves it (tests, several clusters).
func clientTokensFile() (string, error) {
	dir := os.Getenv("TDF_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("no per-user configuration directory (set TDF_CONFIG_DIR or TDF_TOKEN): %w", err)
		}
		dir = filepath.Join(base, "tdf")
	}
	return filepath.Join(dir, "tokens"), nil
}

func normAddr(addr string) string { return strings.TrimRight(strings.TrimSpace(addr), "/") }

// savedClientToken is the token saved for addr, if any.
func savedClientToken(addr string) string {
	path, err := clientTokensFile()
	if err != nil {
		return ""
	}
	entries, _ := readClientTokens(path)
	return entries[normAddr(addr)]
}

func readClientTokens(path string) (map[string]string, error) {
	out := map[string]string{}
	fh, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			out[f[0]] = f[1]
		}
	}
	return out, sc.Err()
}

// saveClientToken remembers token for every addr given, replacing older
// entries, and returns the file's path.
func saveClientToken(token string, addrs ...string) (string, error) {
	if token == "" || strings.ContainsAny(token, " \t\n") {
		return "", errors.New("the token is empty or contains white space")
	}
	path, err := clientTokensFile()
	if err != nil {
		return "", err
	}
	entries, err := readClientTokens(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, a := range addrs {
		entries[normAddr(a)] = token
	}
	var b strings.Builder
	b.WriteString("# API tokens of tdf clusters by URL (tdf token save, tdf dev); keep this file private\n")
	for a, t := range entries {
		fmt.Fprintf(&b, "%s %s\n", a, t)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// authHint says where a token comes from when a request without one was
// refused.
func authHint(c *client, status int) string {
	if status != http.StatusUnauthorized || c.token != "" {
		return ""
	}
	return "; no token was sent: pass --token, set TDF_TOKEN, or save one for this URL with tdf token save (a new cluster's admin token is in admin-token in the data directory of its first leader)"
}
