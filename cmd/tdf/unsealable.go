package main

import (
	"fmt"
	"os"

	"github.com/tdf-project/tdf/api"
)

// printUnsealable tells, after a restore, which sealed secrets the
// cluster's keyring cannot open (the backup came from a cluster with
// another keyring, or the nodes have none).
func printUnsealable(r *api.UnsealReport) {
	if r == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "WARNING: the restored state holds sealed secrets the leader's keyring cannot open; give every node the keyring that sealed them (--keyring-file):")
	for _, k := range r.SigningKeys {
		fmt.Fprintf(os.Stderr, "  signing key %s (keyring key %s): %s\n", k.Name, k.KeyID, k.Error)
	}
	for _, c := range r.Credentials {
		fmt.Fprintf(os.Stderr, "  credential %s (keyring key %s): %s\n", c.Name, c.KeyID, c.Error)
	}
}
