package cloudinit

// These tests check the user data with the real tools that will read it:
// cloud-init (its schema, its YAML loader and its runcmd script writer) and
// systemd (its unit verifier and its own reading of Environment=). Debian
// packages: cloud-init, systemd. Under CI=true a missing tool fails the
// test; elsewhere the test skips, naming it.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/goccy/go-yaml"
)

// needTool returns the path of a program, or skips (fails under CI) when
// it is missing.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	var p string
	var err error
	if filepath.IsAbs(name) {
		_, err = os.Stat(name)
		p = name
	} else {
		p, err = exec.LookPath(name)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (Debian package %s): %v", name, pkg, err)
		}
		t.Skipf("%s is missing (Debian package %s)", name, pkg)
	}
	return p
}

// cloudInitPython is the interpreter cloud-init runs on (its script's
// #! line), which has cloud-init's modules and PyYAML.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	ci := needTool(t, "cloud-init", "cloud-init")
	f, err := os.Open(ci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	py, ok := strings.CutPrefix(strings.TrimSpace(line), "#!")
	if !ok {
		t.Fatalf("%s has no #! line", ci)
	}
	return strings.Fields(py)[0]
}

func putFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func render(t *testing.T, b Boot) string {
	t.Helper()
	ud, err := Render(b)
	if err != nil {
		t.Fatal(err)
	}
	return ud
}

func TestCloudInitSchema(t *testing.T) {
	ci := needTool(t, "cloud-init", "cloud-init")
	noURL := testBoot()
	noURL.AgentURL, noURL.AgentSHA256 = "", ""
	awkward := testBoot()
	maps.Copy(awkward.Env, awkwardValues)
	dir := t.TempDir()
	for name, b := range map[string]Boot{"download": testBoot(), "image has the agent": noURL, "awkward values": awkward} {
		f := putFile(t, dir, "user-data", render(t, b), 0o600)
		out, err := exec.Command(ci, "schema", "--config-file", f).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
			t.Errorf("%s: cloud-init schema: %v\n%s", name, err, out)
		}
	}
	// The check has teeth: a permissions number instead of a string fails.
	f := putFile(t, dir, "bad", "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 600\n", 0o600)
	if out, err := exec.Command(ci, "schema", "--config-file", f).CombinedOutput(); err == nil {
		t.Errorf("cloud-init schema accepted a bad config:\n%s", out)
	}
}

// TestPyYAMLReadsWhatGoWrote: cloud-init loads user data with PyYAML
// (YAML 1.1, where yes, on, 0600 and 1e5 are not strings); it must read
// the same document the Go side does.
func TestPyYAMLReadsWhatGoWrote(t *testing.T) {
	py := cloudInitPython(t)
	b := testBoot()
	maps.Copy(b.Env, awkwardValues)
	b.Env["YES"], b.Env["OCTAL"] = "yes", "0600"
	ud := render(t, b)
	f := putFile(t, t.TempDir(), "user-data", ud, 0o600)
	out, err := exec.Command(py, "-c", "import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", f).Output()
	if err != nil {
		t.Fatalf("PyYAML: %v", err)
	}
	var fromPy, fromGo any
	if err := json.Unmarshal(out, &fromPy); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(ud), &fromGo); err != nil {
		t.Fatal(err)
	}
	goJSON, _ := json.Marshal(fromGo)
	pyJSON, _ := json.Marshal(fromPy)
	if !bytes.Equal(goJSON, pyJSON) {
		t.Fatalf("PyYAML reads\n%s\nGo reads\n%s", pyJSON, goJSON)
	}
}

// unitFile renders a boot whose ExecStart is an executable in dir (systemd
// checks that it exists) and returns the unit's text.
func unitFile(t *testing.T, dir string, env map[string]string) string {
	t.Helper()
	b := testBoot()
	maps.Copy(b.Env, env)
	b.AgentBinary = putFile(t, dir, "vm-agent", "#!/bin/sh\n", 0o755)
	var cc cloudConfig
	if err := yaml.Unmarshal([]byte(render(t, b)), &cc); err != nil {
		t.Fatal(err)
	}
	unit, ok := cc.file(UnitPath)
	if !ok {
		t.Fatal("no unit in the user data")
	}
	return unit
}

// TestSystemdVerifiesUnit runs systemd-analyze verify, which needs no
// running systemd. It exits 0 on mere warnings (an unknown key, a line it
// ignores), so any output fails too.
func TestSystemdVerifiesUnit(t *testing.T) {
	sa := needTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	f := putFile(t, dir, UnitName, unitFile(t, dir, awkwardValues), 0o644)
	out, err := exec.Command(sa, "verify", "--man=no", f).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", f, err, out)
	}
	// The check has teeth: a bad escape is reported.
	bad := putFile(t, dir, "bad.service", strings.Replace(unitFile(t, dir, nil), `"NODE_ID=n-1"`, `"NODE_ID=n\q"`, 1), 0o644)
	if out, _ := exec.Command(sa, "verify", "--man=no", bad).CombinedOutput(); !strings.Contains(string(out), "NODE_ID") {
		t.Fatalf("systemd-analyze verify said nothing of a bad Environment= line:\n%s", out)
	}
}

// TestSystemdReadsTheEnvironment compares Parse's environment with
// systemd's own reading of the unit: `systemd --test` loads the units into
// a manager that starts nothing and dumps them, Environment: lines
// included. It refuses to run as root, so it runs as nobody; generators are
// pointed at an empty directory so nothing else runs.
func TestSystemdReadsTheEnvironment(t *testing.T) {
	systemd := "/usr/lib/systemd/systemd"
	if _, err := os.Stat(systemd); err != nil {
		systemd = "/lib/systemd/systemd"
	}
	needTool(t, systemd, "systemd")
	dir, err := os.MkdirTemp("", "cloudinit-systemd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // readable by nobody
		t.Fatal(err)
	}
	units, empty := filepath.Join(dir, "units"), filepath.Join(dir, "empty")
	for _, d := range []string{units, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unit := unitFile(t, dir, awkwardValues)
	putFile(t, units, UnitName, unit, 0o644)
	want, err := parseUnit(unit)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(systemd, "--test", "--system", "--unit="+UnitName, "--log-target=console")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "SYSTEMD_UNIT_PATH=" + units + ":",
		"SYSTEMD_GENERATOR_PATH=" + empty, "SYSTEMD_ENVIRONMENT_GENERATOR_PATH=" + empty}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd --test: %v\n%s", err, stderr.String())
	}
	got := dumpedEnvironment(string(out), UnitName)
	if !maps.Equal(got, want.env) {
		for k, v := range want.env {
			if got[k] != v {
				t.Errorf("%s: systemd reads %q, Parse %q", k, got[k], v)
			}
		}
		t.Fatalf("systemd's environment %q, Parse's %q", got, want.env)
	}
}

// dumpedEnvironment finds a unit's "Environment: K=V" lines in a systemd
// dump. A value's newline comes out raw, so a line without the dump's tab
// indent continues the previous one.
func dumpedEnvironment(dump, unit string) map[string]string {
	env := map[string]string{}
	_, block, _ := strings.Cut(dump, "\t-> Unit "+unit+":\n")
	last := ""
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "\t-> ") {
			break
		}
		if a, ok := strings.CutPrefix(line, "\t\tEnvironment: "); ok {
			k, v, _ := strings.Cut(a, "=")
			env[k], last = v, k
		} else if !strings.HasPrefix(line, "\t") && last != "" {
			env[last] += "\n" + line
		} else {
			last = ""
		}
	}
	return env
}

// TestRuncmdScript turns runcmd into the script cloud-init would run (with
// cloud-init's own code) and runs it: real curl against a local server,
// sha256sum and install, a stub systemctl. A download that is missing or
// does not match its SHA-256 must leave no binary and start nothing.
func TestRuncmdScript(t *testing.T) {
	py := cloudInitPython(t)
	needTool(t, "curl", "curl")
	for _, tool := range []string{"sha256sum", "install"} {
		needTool(t, tool, "coreutils")
	}
	agent := []byte("#!/bin/sh\necho the agent\n")
	sum := sha256.Sum256(agent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/vm-agent" {
			http.NotFound(w, r)
			return
		}
		w.Write(agent)
	}))
	defer srv.Close()

	for name, tc := range map[string]struct {
		path, sha string
		ok        bool
	}{
		"matches":   {"/vm-agent", hex.EncodeToString(sum[:]), true},
		"mismatch":  {"/vm-agent", testSHA, false},
		"not found": {"/nothing", hex.EncodeToString(sum[:]), false},
		"upper sha": {"/vm-agent", strings.ToUpper(hex.EncodeToString(sum[:])), true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(dir, "systemctl.log")
			putFile(t, bin, "systemctl", "#!/bin/sh\necho \"$*\" >> "+log+"\n", 0o755)
			b := testBoot()
			b.AgentURL, b.AgentSHA256, b.AgentBinary = srv.URL+tc.path, tc.sha, filepath.Join(dir, "vm-agent")
			f := putFile(t, dir, "user-data", render(t, b), 0o600)
			script, err := exec.Command(py, "-c", "import sys,yaml; from cloudinit import util; "+
				"sys.stdout.write(util.shellify(yaml.safe_load(open(sys.argv[1]))['runcmd']))", f).Output()
			if err != nil {
				t.Fatalf("cloud-init shellify: %v", err)
			}
			cmd := exec.Command("/bin/sh", putFile(t, dir, "runcmd", string(script), 0o755))
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			calls, _ := os.ReadFile(log)
			installed, statErr := os.Stat(b.AgentBinary)
			if _, dlErr := os.Stat(b.AgentBinary + ".download"); dlErr == nil {
				t.Errorf("the download was left behind")
			}
			if !tc.ok {
				if err == nil || statErr == nil || len(calls) > 0 {
					t.Fatalf("runcmd exit %v, binary %v, systemctl calls %q; want a failure, no binary, no calls\n%s", err, statErr, calls, out)
				}
				return
			}
			if err != nil || statErr != nil || installed.Mode().Perm() != 0o755 {
				t.Fatalf("runcmd: %v, binary %v %v\n%s\n%s", err, installed, statErr, out, script)
			}
			if got, _ := os.ReadFile(b.AgentBinary); !bytes.Equal(got, agent) {
				t.Errorf("installed %q, want %q", got, agent)
			}
			if want := "daemon-reload\nenable --now " + UnitName + "\n"; string(calls) != want {
				t.Errorf("systemctl calls %q, want %q", calls, want)
			}
		})
	}
}
