package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/cloud"
)

func TestAgentBinaryFlags(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args         []string
		cloud        bool
		err, warning string
	}{
		{args: []string{"--agent-binary-url", "https://dl.example.com/vm-agent", "--agent-binary-sha256", sha}, cloud: true},
		{args: nil, cloud: false},
		{args: nil, cloud: true, warning: "no --agent-binary-url"},
		{args: []string{"--agent-binary-url", "https://dl.example.com/vm-agent"}, err: "is not 64 hex digits"},
		{args: []string{"--agent-binary-sha256", sha}, err: "without a download URL"},
		{args: []string{"--agent-binary-url", "ftp://dl.example.com/vm-agent", "--agent-binary-sha256", sha}, err: "not an http or https URL"},
	} {
		cfg := defaultServerConfig()
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		bindAgentBinary(fs, cfg.Pipeline)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if tc.cloud {
			cfg.Pipeline.Cloud = someCloud{}
		}
		var logs bytes.Buffer
		err := checkAgentBinary(cfg.Pipeline, hclog.New(&hclog.LoggerOptions{Output: &logs}))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: checkAgentBinary = %v, want an error containing %q", tc.args, err, tc.err)
		}
		if got := logs.String(); tc.warning == "" && got != "" || !strings.Contains(got, tc.warning) {
			t.Errorf("%v (cloud %v): logged %q, want %q", tc.args, tc.cloud, got, tc.warning)
		}
	}
}

// someCloud is a configured cloud that is never called.
type someCloud struct{ cloud.Provider }
