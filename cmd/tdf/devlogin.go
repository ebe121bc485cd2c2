package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tdf-project/tdf/server"
)

// devLogin waits for the bootstrap admin token the first leader writes
// into its data directory, saves it for every URL of the dev cluster in
// the per-user tokens file (so the CLI needs no extra step), and prints
// the dashboard's sign-in link. The token travels in the URL's fragment,
// which the browser never sends to a server; the page moves it to the
// tab's storage and drops it from the address bar.
func devLogin(ctx context.Context, nodes []devNode, urls []string) {
	tok, file := waitDevToken(ctx, nodes, urls[1])
	if tok == "" {
		return
	}
	if path, err := saveClientToken(tok, urls...); err != nil {
		fmt.Printf("tdf dev: cannot save the admin token for the CLI (%v); use TDF_TOKEN=$(cat %s)\n", err, file)
	} else {
		fmt.Printf("tdf dev: authentication is on; the admin token is in %s, saved for the CLI in %s\n", file, path)
	}
	fmt.Printf("tdf dev: dashboard: %s/ui/#token=%s\n", urls[1], tok)
}

// waitDevToken polls the nodes' data directories for a token the cluster
// accepts (a node may hold a stale one from a bootstrap another won).
func waitDevToken(ctx context.Context, nodes []devNode, url string) (tok, file string) {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		for _, n := range nodes {
			t, err := server.ReadAdminToken(n.data)
			if err == nil && tokenAccepted(ctx, hc, url, t) {
				return t, filepath.Join(n.data, server.AdminTokenFile)
			}
		}
		select {
		case <-ctx.Done():
			return "", ""
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func tokenAccepted(ctx context.Context, hc *http.Client, url, tok string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/whoami", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
