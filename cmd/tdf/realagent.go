package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tdf-project/tdf/vmagent/realagent"
)

// realAgentFlags are tdf fakecloud's flags for booting the real VM agent
// instead of the simulated one.
type realAgentFlags struct {
	binary, fixture, role, dir, log string
	env                             map[string]string
}

func (f *realAgentFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.binary, "real-agent", "", "boot this real VM agent binary for each server instead of the simulated agent (in a read-only mount namespace; needs root and unshare)")
	fs.StringVar(&f.fixture, "real-agent-fixture", "", "directory holding the agent's `sandbox` script and `stubs/` (required with --real-agent)")
	fs.StringVar(&f.role, "real-agent-role", "standalone", `the agent's role: "standalone" (no docker; works in a directory) or "vm" (the cloud-init's own, which needs docker and fails offline)`)
	fs.StringVar(&f.dir, "real-agent-dir", "", "directory under /tmp for the agents' state (default: a new temporary directory)")
	fs.StringVar(&f.log, "real-agent-log", "", "file the agents' output is appended to (default: discarded)")
	f.env = map[string]string{}
	fs.Func("real-agent-env", "KEY=VALUE added to every real agent's environment, such as HEARTBEAT_INTERVAL=5s (repeatable)", func(v string) error {
		k, val, ok := cutEnv(v)
		if !ok {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		f.env[k] = val
		return nil
	})
}

// options returns the agents' options, or nil without --real-agent.
func (f *realAgentFlags) options() (*realagent.Options, error) {
	if f.binary == "" {
		return nil, nil
	}
	if f.fixture == "" {
		return nil, fmt.Errorf("--real-agent needs --real-agent-fixture (the directory with sandbox and stubs/)")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	o := &realagent.Options{Binary: f.binary, Sandbox: filepath.Join(f.fixture, "sandbox"), Stubs: filepath.Join(f.fixture, "stubs"),
		TDF: exe, Root: f.dir, Env: f.env}
	switch f.role {
	case "standalone":
		o.Role = realagent.RoleStandalone
	case "vm":
		o.Role = realagent.RoleVM
	default:
		return nil, fmt.Errorf("--real-agent-role %q: want standalone or vm", f.role)
	}
	if o.Root == "" {
		if o.Root, err = os.MkdirTemp("/tmp", "tdf-real-agents-"); err != nil {
			return nil, err
		}
	}
	if f.log != "" {
		lf, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--real-agent-log: %w", err)
		}
		o.Output = lf
	} else {
		o.Output = io.Discard
	}
	return o, o.Check()
}

func cutEnv(v string) (k, val string, ok bool) {
	k, val, ok = strings.Cut(v, "=")
	return k, val, ok && k != ""
}
