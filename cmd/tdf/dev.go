package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runDev runs a local three-node cluster as three child processes of this
// binary, so that any one of them can be killed (kill -9) and watched being
// restarted and caught up. Ctrl-C stops all three cleanly.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data/dev", "parent directory of the nodes' data directories")
	host := fs.String("host", "127.0.0.1", "address the nodes listen on")
	httpPort := fs.Int("http-port", 8001, "API port of the first node; the others use the next ports")
	raftPort := fs.Int("raft-port", 7001, "raft port of the first node; the others use the next ports")
	restart := fs.Bool("restart", true, "restart a node that dies (for example after kill -9)")
	var logOpts logOptions
	logOpts.bind(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var nodes []devNode
	var peers []string
	for i := 1; i <= 3; i++ {
		n := devNode{
			id:   fmt.Sprintf("n%d", i),
			raft: fmt.Sprintf("%s:%d", *host, *raftPort+i-1),
			http: fmt.Sprintf("%s:%d", *host, *httpPort+i-1),
		}
		n.data = filepath.Join(*dataDir, n.id)
		peers = append(peers, n.id+"="+n.raft)
		nodes = append(nodes, n)
	}
	fmt.Println("tdf dev: a three-node cluster on", *host)
	for _, n := range nodes {
		fmt.Printf("  %s  API http://%s   raft %s   data %s\n", n.id, n.http, n.raft, n.data)
	}
	fmt.Println("Try: tdf task submit --addr http://" + nodes[1].http + " --project p1 --user u1 --repo github.com/acme/app --prompt 'fix the bug'")
	fmt.Println("Ctrl-C stops the cluster.")
	var wg sync.WaitGroup
	for _, n := range nodes {
		args := []string{"server", "--node-id", n.id, "--data-dir", n.data, "--raft-addr", n.raft,
			"--http-addr", n.http, "--bootstrap", strings.Join(peers, ","),
			"--log-level", logOpts.level, fmt.Sprintf("--log-json=%v", logOpts.json)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			superviseNode(ctx, exe, n.id, args, *restart)
		}()
	}
	wg.Wait()
	fmt.Println("tdf dev: stopped")
	return nil
}

type devNode struct{ id, raft, http, data string }

// superviseNode runs one node until ctx ends, restarting it if it dies.
func superviseNode(ctx context.Context, exe, id string, args []string, restart bool) {
	for {
		cmd := exec.Command(exe, args...)
		cmd.Stdout = prefixWriter(id)
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "[%s] cannot start: %v\n", id, err)
			return
		}
		fmt.Printf("[%s] started, pid %d\n", id, cmd.Process.Pid)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			return
		case err := <-exited:
			fmt.Printf("[%s] exited: %v\n", id, err)
			if !restart {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
				fmt.Printf("[%s] restarting\n", id)
			}
		}
	}
}

// prefixWriter prefixes each line a node writes with its id.
func prefixWriter(id string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Printf("[%s] %s\n", id, sc.Text())
		}
	}()
	return pw
}
