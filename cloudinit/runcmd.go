package cloudinit

// cloud-init writes runcmd into one /bin/sh script, a list item as its
// words single-quoted, a string item verbatim. The leading "set -e" makes
// a failed step stop the script: a download that fails or does not match
// its SHA-256 leaves the unit unstarted, and cloud-init reports the error
// (cloud-init status, /var/log/cloud-init-output.log).

// checkScript deletes a download that does not match its SHA-256 and fails.
// Its arguments are the SHA-256 and the file.
const checkScript = `echo "$1  $2" | sha256sum --check --status || { rm -f "$2"; echo "vm-agent: $2 does not match SHA-256 $1: not starting the agent" >&2; exit 1; }`

// checkName is checkScript's $0, which marks its step for Parse.
const checkName = "vm-agent-sha256"

// runcmd returns the steps: download, check, install, start.
func runcmd(b Boot) []any {
	steps := []any{"set -e"}
	if b.AgentURL != "" {
		dl := b.AgentBinary + ".download"
		steps = append(steps,
			[]string{"curl", "--fail", "--silent", "--show-error", "--location", "--retry", "5", "--retry-connrefused",
				"--connect-timeout", "10", "--max-time", "300", "--output", dl, b.AgentURL},
			[]string{"sh", "-c", checkScript, checkName, b.AgentSHA256, dl},
			[]string{"install", "-m", "0755", dl, b.AgentBinary},
			[]string{"rm", "-f", dl},
		)
	}
	return append(steps, []string{"systemctl", "daemon-reload"}, []string{"systemctl", "enable", "--now", UnitName})
}

// download returns the URL and SHA-256 of the steps runcmd wrote; both
// are empty when the image has the binary.
func (cc cloudConfig) download() (url, sha256 string) {
	for _, step := range cc.Runcmd {
		args := words(step)
		switch {
		case len(args) > 1 && args[0] == "curl":
			url = args[len(args)-1]
		case len(args) == 6 && args[0] == "sh" && args[3] == checkName:
			sha256 = args[4]
		}
	}
	return url, sha256
}

// words returns a list step's words; a string step has none.
func words(step any) []string {
	list, _ := step.([]any)
	out := make([]string, 0, len(list))
	for _, w := range list {
		s, ok := w.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}
