// Package cloudinit renders the cloud-init user data that boots the real VM
// agent on a stock server image, and parses it back, which is how the
// simulated cloud boots its agents from exactly what a real VM would get.
//
// The cloud-config writes the callback token (0600) and a systemd unit
// whose Environment= lines are the agent's configuration; its runcmd
// downloads the agent binary, checks it against a SHA-256, installs it and
// starts the unit. Without a download URL the image must carry the binary
// already (a custom image); the unit is written and started the same way.
package cloudinit

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"strings"

	"github.com/goccy/go-yaml"
)

// Paths and names on the VM.
const (
	// TokenPath is where the callback token is written by default.
	TokenPath = "/etc/sam/callback-token"
	// AgentPath is where the agent binary is installed by default.
	AgentPath = "/usr/local/bin/vm-agent"
	// UnitName is the agent's systemd unit; UnitPath is its file.
	UnitName = "vm-agent.service"
	UnitPath = "/etc/systemd/system/" + UnitName
)

// MaxUserData is Hetzner's limit on user_data.
const MaxUserData = 32 << 10

// envTokenFile is the agent's variable naming the token file.
const envTokenFile = "CALLBACK_TOKEN_FILE"

// Boot is what the agent needs to start.
type Boot struct {
	// Env is the agent's environment as the unit's Environment= lines give
	// it to the process: NODE_ID, CONTROL_PLANE_URL, JWKS_ENDPOINT,
	// CALLBACK_TOKEN_FILE, VM_AGENT_PORT, task context. systemd adds its
	// own (PATH, HOME=/root for User=root, INVOCATION_ID, …); those are not
	// here. Render sets CALLBACK_TOKEN_FILE to the token's path.
	Env map[string]string
	// CallbackToken is the node-scoped callback token, written to a 0600
	// file the agent reads.
	CallbackToken string
	// CallbackTokenPath is that file; empty means TokenPath.
	CallbackTokenPath string
	// AgentURL is where runcmd downloads the agent binary (http or https);
	// AgentSHA256 is its SHA-256 in hex: a binary that does not match is
	// deleted and the agent is not started. Both empty: the image already
	// has the binary at AgentPath.
	AgentURL    string
	AgentSHA256 string
	// AgentBinary is where the binary is installed and what the unit runs;
	// empty means AgentPath. Tests point it at a file of their own.
	AgentBinary string
}

// cloudConfig is the part of cloud-init's schema tdf writes. Field order is
// the document's order.
type cloudConfig struct {
	WriteFiles []writeFile `yaml:"write_files"`
	Runcmd     []any       `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
}

// Render writes the cloud-config. It fails on a value systemd or the agent
// could not take, and if the result exceeds Hetzner's 32 KiB limit.
func Render(b Boot) (string, error) {
	b, err := b.withDefaults()
	if err != nil {
		return "", err
	}
	unit, err := renderUnit(b.AgentBinary, b.Env)
	if err != nil {
		return "", err
	}
	cc := cloudConfig{
		WriteFiles: []writeFile{
			{Path: b.CallbackTokenPath, Permissions: "0600", Content: b.CallbackToken},
			{Path: UnitPath, Permissions: "0644", Content: unit},
		},
		Runcmd: runcmd(b),
	}
	out, err := yaml.MarshalWithOptions(cc, yaml.UseLiteralStyleIfMultiline(true), yaml.IndentSequence(true))
	if err != nil {
		return "", fmt.Errorf("cloudinit: %w", err)
	}
	ud := "#cloud-config\n" + string(out)
	if len(ud) > MaxUserData {
		return "", fmt.Errorf("cloudinit: user data is %d bytes, Hetzner allows %d", len(ud), MaxUserData)
	}
	return ud, nil
}

// withDefaults fills the default paths, sets CALLBACK_TOKEN_FILE, and
// checks what Render will write.
func (b Boot) withDefaults() (Boot, error) {
	b.CallbackTokenPath = cmp.Or(b.CallbackTokenPath, TokenPath)
	b.AgentBinary = cmp.Or(b.AgentBinary, AgentPath)
	b.AgentSHA256 = strings.ToLower(b.AgentSHA256)
	for name, p := range map[string]string{"token path": b.CallbackTokenPath, "agent binary path": b.AgentBinary} {
		if err := checkPath(p); err != nil {
			return b, fmt.Errorf("cloudinit: %s: %w", name, err)
		}
	}
	if err := CheckAgentBinary(b.AgentURL, b.AgentSHA256); err != nil {
		return b, fmt.Errorf("cloudinit: %w", err)
	}
	// The agent trims the file's content, so a token with spaces at its
	// ends would arrive changed; none of ours has any whitespace.
	if b.CallbackToken == "" || strings.ContainsFunc(b.CallbackToken, isSpaceOrControl) {
		return b, errors.New("cloudinit: the callback token is empty or has whitespace or control characters")
	}
	if b.Env["NODE_ID"] == "" || b.Env["CONTROL_PLANE_URL"] == "" {
		return b, errors.New("cloudinit: NODE_ID and CONTROL_PLANE_URL are required (the agent exits without them)")
	}
	if f, ok := b.Env[envTokenFile]; ok && f != b.CallbackTokenPath {
		return b, fmt.Errorf("cloudinit: %s is %q but the token is written to %q", envTokenFile, f, b.CallbackTokenPath)
	}
	env := maps.Clone(b.Env)
	env[envTokenFile] = b.CallbackTokenPath
	b.Env = env
	return b, nil
}

// CheckAgentBinary checks a download URL and SHA-256 for the agent binary:
// both empty (the image has the binary), or an http(s) URL and 64 hex
// digits.
func CheckAgentBinary(rawURL, sha256 string) error {
	if rawURL == "" && sha256 == "" {
		return nil
	}
	if rawURL == "" {
		return errors.New("an agent binary SHA-256 without a download URL")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsFunc(rawURL, isSpaceOrControl) {
		return fmt.Errorf("agent binary URL %q is not an http or https URL", rawURL)
	}
	if len(sha256) != 64 || strings.Trim(strings.ToLower(sha256), "0123456789abcdef") != "" {
		return fmt.Errorf("agent binary SHA-256 %q is not 64 hex digits", sha256)
	}
	return nil
}

// checkPath accepts absolute paths of plain characters, which need no
// quoting in a unit file, a shell or YAML.
func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-", c)) {
			return fmt.Errorf("%q has a character other than letters, digits and /._-", p)
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// Parse reads back what Render wrote: the environment from the unit's
// Environment= lines (unquoted and unescaped as systemd does), the token and
// its path, the binary's path, URL and SHA-256.
func Parse(userData string) (Boot, error) {
	var b Boot
	if !strings.HasPrefix(userData, "#cloud-config\n") {
		return b, errors.New("cloudinit: user data is not a cloud-config")
	}
	var cc cloudConfig
	if err := yaml.Unmarshal([]byte(userData), &cc); err != nil {
		return b, fmt.Errorf("cloudinit: %w", err)
	}
	unit, ok := cc.file(UnitPath)
	if !ok {
		return b, errors.New("cloudinit: no agent boot data (no " + UnitPath + ")")
	}
	u, err := parseUnit(unit)
	if err != nil {
		return b, err
	}
	b.Env, b.AgentBinary = u.env, u.execStart
	b.CallbackTokenPath = b.Env[envTokenFile]
	tok, _ := cc.file(b.CallbackTokenPath)
	b.CallbackToken = strings.TrimSpace(tok)
	if b.CallbackToken == "" || b.Env["NODE_ID"] == "" {
		return b, errors.New("cloudinit: no agent boot data (token or NODE_ID missing)")
	}
	b.AgentURL, b.AgentSHA256 = cc.download()
	if err := CheckAgentBinary(b.AgentURL, b.AgentSHA256); err != nil {
		return b, fmt.Errorf("cloudinit: %w", err)
	}
	return b, nil
}

// file returns the content write_files gives a path.
func (cc cloudConfig) file(p string) (string, bool) {
	for _, f := range cc.WriteFiles {
		if f.Path == p {
			return f.Content, true
		}
	}
	return "", false
}
