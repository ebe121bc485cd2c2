package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tdf lb serves the nodes behind one URL, and names a bad command line.
func TestLBCommand(t *testing.T) {
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "node:"+r.URL.Path)
	}))
	defer node.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runLB(ctx, []string{"--listen", addr, "--backends", node.URL}) }()
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/tasks")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tdf lb did not answer through its backend: %v %q", err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "node:/v1/tasks" {
		t.Fatalf("through tdf lb: %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tdf lb after Ctrl-C: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:0"}, "--backends is required"},
		{[]string{"--listen", "127.0.0.1:0", "--backends", "127.0.0.1:8001"}, "want http(s)://host:port"},
		{[]string{"--backends", node.URL, "extra"}, "no arguments"},
	} {
		if err := runLB(context.Background(), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tdf lb %q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
