// Package cloudinit renders the cloud-init user data that boots a VM agent
// (VMAGENT.md "Boot"), and parses it back, which is how the simulated
// cloud boots its simulated agents from exactly what a real VM would get.
package cloudinit

import (
	"bufio"
	"fmt"
	"sort"
	"strings"
)

// Paths on the VM.
const (
	TokenPath = "/etc/sam/callback-token"
	EnvPath   = "/etc/sam/vm-agent.env"
)

// MaxUserData is Hetzner's limit on user_data.
const MaxUserData = 32 << 10

// Boot is what the agent needs to start.
type Boot struct {
	// Env is the agent's environment: NODE_ID, CONTROL_PLANE_URL,
	// JWKS_ENDPOINT, CALLBACK_TOKEN_FILE, VM_AGENT_PORT, task context.
	Env map[string]string
	// CallbackToken is the node-scoped callback token, written to a 0600
	// file the agent reads.
	CallbackToken string
}

// Render writes the cloud-config. It fails if the result exceeds
// Hetzner's 32 KiB limit.
func Render(b Boot) (string, error) {
	var sb strings.Builder
	sb.WriteString("#cloud-config\nwrite_files:\n")
	fmt.Fprintf(&sb, "  - path: %s\n    permissions: \"0600\"\n    content: %q\n", TokenPath, b.CallbackToken)
	keys := make([]string, 0, len(b.Env))
	for k := range b.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&sb, "  - path: %s\n    permissions: \"0600\"\n    content: |\n", EnvPath)
	for _, k := range keys {
		if strings.ContainsAny(b.Env[k], "\n\r") {
			return "", fmt.Errorf("cloudinit: %s contains a newline", k)
		}
		fmt.Fprintf(&sb, "      %s=%s\n", k, b.Env[k])
	}
	sb.WriteString("runcmd:\n  - [systemctl, enable, --now, vm-agent]\n")
	if sb.Len() > MaxUserData {
		return "", fmt.Errorf("cloudinit: user data is %d bytes, Hetzner allows %d", sb.Len(), MaxUserData)
	}
	return sb.String(), nil
}

// Parse reads back what Render wrote.
func Parse(userData string) (Boot, error) {
	b := Boot{Env: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(userData))
	section := ""
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "- path: "):
			section = strings.TrimPrefix(trimmed, "- path: ")
		case section == TokenPath && strings.HasPrefix(trimmed, "content: "):
			var tok string
			if _, err := fmt.Sscanf(strings.TrimPrefix(trimmed, "content: "), "%q", &tok); err != nil {
				return b, fmt.Errorf("cloudinit: token: %v", err)
			}
			b.CallbackToken = tok
		case section == EnvPath && strings.HasPrefix(line, "      "):
			if k, v, ok := strings.Cut(trimmed, "="); ok {
				b.Env[k] = v
			}
		case !strings.HasPrefix(line, " "):
			section = ""
		}
	}
	if b.CallbackToken == "" || b.Env["NODE_ID"] == "" {
		return b, fmt.Errorf("cloudinit: no agent boot data (token or NODE_ID missing)")
	}
	return b, nil
}
