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

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/lb"
)

// runDev runs a local three-node cluster as three child processes of this
// binary, so that any one of them can be killed (kill -9) and watched being
// restarted and caught up. Ctrl-C stops all three cleanly.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data/dev", "parent directory of the nodes' data directories")
	host := fs.String("host", "127.0.0.1", "address the nodes listen on")
	lbAddr := fs.String("lb-addr", "127.0.0.1:8000", "address of the load balancer in front of the nodes: the agents' one control-plane URL")
	httpPort := fs.Int("http-port", 8001, "API port of the first node; the others use the next ports")
	raftPort := fs.Int("raft-port", 7001, "raft port of the first node; the others use the next ports")
	restart := fs.Bool("restart", true, "restart a node that dies (for example after kill -9)")
	cloudAddr := fs.String("fakecloud-addr", "127.0.0.1:9000", "address of the simulated cloud (tdf fakecloud)")
	idle := fs.Duration("session-idle-timeout", 30*time.Second, "follow-up idle timer (short in dev so tasks complete quickly)")
	warm := fs.Duration("node-warm-timeout", time.Minute, "warm node lifetime (short in dev so nodes are destroyed while you watch)")
	insecure := fs.Bool("insecure-no-auth", false, "run the nodes without API authentication (see tdf server --help)")
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
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "http://"+n.http)
	}
	// One keyring for the three nodes, kept across restarts of tdf dev.
	keyringFile, err := devKeyring(*dataDir)
	if err != nil {
		return err
	}
	// The agents know one URL, as in production: a load balancer in
	// front of the nodes, so that their callbacks survive any node's death.
	balancer, err := lb.Listen(*lbAddr, lb.Options{Backends: urls, Logger: logOpts.logger("tdf")})
	if err != nil {
		return err
	}
	defer balancer.Close()
	fmt.Println("tdf dev: a three-node cluster on", *host, "with the simulated cloud at http://"+*cloudAddr)
	fmt.Printf("  lb  %s   the control-plane URL: agents call back here; any node may die\n", balancer.URL)
	for _, n := range nodes {
		fmt.Printf("  %s  API http://%s   raft %s   data %s\n", n.id, n.http, n.raft, n.data)
	}
	fmt.Println("Try: tdf task submit --addr " + balancer.URL + " --project p1 --user u1 --repo github.com/acme/app --prompt 'fix the bug'")
	fmt.Println("Ctrl-C stops the cluster.")
	var wg sync.WaitGroup
	logArgs := []string{"--log-level", logOpts.level, fmt.Sprintf("--log-json=%v", logOpts.json)}
	// The cloud token goes by environment (flags show in ps), the same to
	// the fake cloud and the servers.
	env := []string{"TDF_CLOUD_TOKEN=" + fakecloud.DefaultToken}
	wg.Add(1)
	go func() {
		defer wg.Done()
		args := append([]string{"fakecloud", "--http-addr", *cloudAddr}, logArgs...)
		superviseNode(ctx, exe, "cloud", args, env, *restart)
	}()
	for _, n := range nodes {
		args := []string{"server", "--node-id", n.id, "--data-dir", n.data, "--raft-addr", n.raft,
			"--http-addr", n.http, "--bootstrap", strings.Join(peers, ","),
			"--cloud-endpoint", "http://" + *cloudAddr + "/v1",
			"--control-plane-url", balancer.URL,
			"--session-idle-timeout", idle.String(), "--node-warm-timeout", warm.String(),
			"--provisioning-poll-interval", "1s", "--agent-ready-poll-interval", "1s", "--node-ready-grace", "10s",
			"--retry-base-delay", "1s", "--keyring-file", keyringFile}
		args = append(args, logArgs...)
		if *insecure {
			args = append(args, "--insecure-no-auth")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			superviseNode(ctx, exe, n.id, args, env, *restart)
		}()
	}
	if !*insecure {
		go devLogin(ctx, nodes, append([]string{balancer.URL}, urls...))
	}
	wg.Wait()
	fmt.Println("tdf dev: stopped")
	return nil
}

type devNode struct{ id, raft, http, data string }

// superviseNode runs one node until ctx ends, restarting it if it dies.
func superviseNode(ctx context.Context, exe, id string, args, env []string, restart bool) {
	for {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), env...)
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
