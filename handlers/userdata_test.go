package handlers_test

import (
	"strings"
	"testing"

	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/fsm"
)

// The server's user data downloads the configured agent binary and checks
// its SHA-256 (cloudinit tests what the VM then does with it).
func TestProvisionUserDataDownloadsTheAgent(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.cfg.AgentBinaryURL = "https://downloads.example.com/vm-agent-linux-amd64"
	w.cfg.AgentBinarySHA256 = strings.Repeat("0f", 32)
	w.submit("t-ud", taskSpec())
	if out := w.run(w.claim("t-ud")); out.Err != nil {
		t.Fatalf("provision: %v", out.Err)
	}
	vms := w.fake.Servers()
	if len(vms) != 1 {
		t.Fatalf("servers = %+v, want one", vms)
	}
	boot, err := cloudinit.Parse(vms[0].UserData)
	if err != nil {
		t.Fatal(err)
	}
	if boot.AgentURL != w.cfg.AgentBinaryURL || boot.AgentSHA256 != w.cfg.AgentBinarySHA256 || boot.AgentBinary != cloudinit.AgentPath {
		t.Errorf("user data downloads %q (SHA-256 %q) to %q, want %q (%q) to %q", boot.AgentURL, boot.AgentSHA256, boot.AgentBinary,
			w.cfg.AgentBinaryURL, w.cfg.AgentBinarySHA256, cloudinit.AgentPath)
	}
	if task, _ := w.f.Task("t-ud"); task.Step != fsm.StepNodeProvisioning {
		t.Errorf("task at %s", task.Step)
	}
}
