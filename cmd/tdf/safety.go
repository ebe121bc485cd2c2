package main

// Membership and backups from the command line: tdf cluster join,
// tdf snapshot save|restore (docs/operations.md).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

// runClusterJoin adds a server as a voter: the server must already run
// (with neither --bootstrap nor --join, it waits for the leader to contact
// it). `tdf server --join URL` does the same from the new server's side.
func runClusterJoin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster join", flag.ContinueOnError)
	addr := clientFlags(fs)
	var req cluster.JoinRequest
	fs.StringVar(&req.ID, "id", "", "the new server's --node-id (required)")
	fs.StringVar(&req.RaftAddr, "raft-addr", "", "the new server's raft address as peers dial it, host:port (required)")
	fs.StringVar(&req.APIAddr, "api-url", "", "the new server's API URL, e.g. http://10.0.0.4:8001 (required)")
	c, err := parseClient(fs, args, addr)
	if err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("tdf cluster join: %v (see --help)", err)
	}
	if err := c.do(ctx, http.MethodPost, "/v1/cluster/join", req, nil, nil); err != nil {
		return err
	}
	fmt.Printf("%s joined as a voter (raft %s, api %s)\n", req.ID, req.RaftAddr, req.APIAddr)
	return nil
}

func runSnapshot(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: tdf snapshot save --out FILE | restore --in FILE [--force] [--addr URL]")
		return errUsage
	}
	fs := flag.NewFlagSet("snapshot "+args[0], flag.ContinueOnError)
	addr := clientFlags(fs)
	switch args[0] {
	case "save":
		out := fs.String("out", "", "file to write the backup to (required; written via a temporary file, then renamed)")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if *out == "" {
			return errors.New("tdf snapshot save: --out FILE is required")
		}
		return snapshotSave(ctx, c, *out)
	case "restore":
		in := fs.String("in", "", "backup file written by tdf snapshot save (required)")
		force := fs.Bool("force", false, "restore even if the cluster holds tasks (they are discarded)")
		c, err := parseClient(fs, args[1:], addr)
		if err != nil {
			return err
		}
		if *in == "" {
			return errors.New("tdf snapshot restore: --in FILE is required")
		}
		return snapshotRestore(ctx, c, *in, *force)
	}
	fmt.Fprintf(os.Stderr, "tdf snapshot: unknown subcommand %q (save, restore)\n", args[0])
	return errUsage
}

// leaderClient returns a client for the leader's API: a backup download
// carries its hash in HTTP trailers, which forwarding would drop, and a
// restore upload is not forwarded at all.
func leaderClient(ctx context.Context, c *client) (*client, error) {
	var st cluster.Status
	if err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &st); err != nil {
		return nil, err
	}
	if st.LeaderAPI == "" {
		return nil, fmt.Errorf("%s knows no leader right now (%s); retry", c.addr, st.State)
	}
	lc, err := newClient(st.LeaderAPI)
	if err != nil {
		return nil, err
	}
	lc.http.Timeout = 0 // a backup takes as long as its size
	return lc, nil
}

func snapshotSave(ctx context.Context, c *client, out string) error {
	lc, err := leaderClient(ctx, c)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, lc.addr+"/v1/cluster/snapshot", nil)
	if err != nil {
		return err
	}
	lc.authorize(req)
	resp, err := lc.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", lc.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpError(resp)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	check := fsm.New()
	// Decode while downloading: the stream's CRC-32C trailer and record
	// structure are checked before the file is kept.
	derr := check.Restore(io.NopCloser(io.TeeReader(resp.Body, io.MultiWriter(tmp, h))))
	if derr != nil {
		return fmt.Errorf("backup stream from %s is incomplete or corrupt: %v", lc.addr, derr)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("backup stream from %s: %v", lc.addr, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want := resp.Trailer.Get(api.TrailerSnapshotHash); want != sum {
		return fmt.Errorf("backup from %s: SHA-256 %s, but the server sent %q: the stream is incomplete", lc.addr, sum, want)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	size, _ := strconv.ParseInt(resp.Trailer.Get(api.TrailerSnapshotSize), 10, 64)
	info := cluster.BackupInfo{Index: check.AppliedIndex(), Bytes: size, Hash: sum}
	fmt.Printf("saved backup of %s at index %d: %d bytes, %d tasks, state hash %s, CRC ok → %s\n",
		resp.Header.Get("X-Tdf-Node"), info.Index, info.Bytes, check.TaskCount(), info.Hash, out)
	return nil
}

func snapshotRestore(ctx context.Context, c *client, in string, force bool) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	// Check the file before sending it: a damaged backup is refused here
	// with the file's name rather than by the server.
	h := sha256.New()
	check := fsm.New()
	if err := check.Restore(io.NopCloser(io.TeeReader(f, h))); err != nil {
		return fmt.Errorf("%s is not a usable backup: %v", in, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	lc, err := leaderClient(ctx, c)
	if err != nil {
		return err
	}
	url := lc.addr + "/v1/cluster/restore"
	if force {
		url += "?force=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, f)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	lc.authorize(req)
	resp, err := lc.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", lc.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpError(resp)
	}
	var info api.RestoreAnswer
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return fmt.Errorf("restore answer: %v", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); info.RestoredHash != sum {
		return fmt.Errorf("restored state hash %s differs from the file's %s", info.RestoredHash, sum)
	}
	fmt.Printf("restored %s into the cluster (leader %s): index %d, %d tasks, state hash %s\n",
		in, resp.Header.Get("X-Tdf-Node"), info.Backup.Index, check.TaskCount(), info.RestoredHash)
	printUnsealable(info.Unsealable)
	return nil
}

func httpError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e api.ErrorBody
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		return fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
}
