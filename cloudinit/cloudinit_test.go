package cloudinit

import (
	"maps"
	"reflect"
	"strings"
	"testing"
)

const testSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// testBoot is a production-like boot: a download URL and the environment
// the pipeline gives.
func testBoot() Boot {
	return Boot{CallbackToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJuLTEifQ.c2ln",
		AgentURL: "https://downloads.example.com/vm-agent/v1.2.3/vm-agent-linux-amd64", AgentSHA256: testSHA,
		Env: map[string]string{
			"NODE_ID": "n-1", "CONTROL_PLANE_URL": "https://tdf.example.com", "CONTROL_PLANE_URLS": "",
			"JWKS_ENDPOINT": "https://tdf.example.com/.well-known/jwks.json", "CALLBACK_TOKEN_FILE": TokenPath,
			"VM_AGENT_PORT": "8080", "PROJECT_ID": "p-1", "TASK_ID": "t-1",
		}}
}

// awkwardValues are values that systemd's quoting, escaping and specifier
// rules would change if Render got them wrong.
var awkwardValues = map[string]string{
	"SPACES": " lead and trail ", "DQUOTE": `say "hi"`, "SQUOTE": "it's", "BACKSLASH": `C:\path\`,
	"PERCENT": "100% %n %%", "DOLLAR": "$HOME ${X}", "TAB": "a\tb", "NEWLINE": "one\ntwo", "CTRL": "bell\x07del\x7f",
	"HASH": "#not a comment ;nor this", "EQUALS": "a=b=c", "UNICODE": "ünïcødé ✓", "EMPTY": "",
	"URLQ": "https://h.example/p?a=1&b='2'#f",
}

func TestRenderParseRoundTrip(t *testing.T) {
	for name, in := range map[string]Boot{
		"download": testBoot(),
		"image has the agent": func() Boot {
			b := testBoot()
			b.AgentURL, b.AgentSHA256 = "", ""
			return b
		}(),
		"other paths": func() Boot {
			b := testBoot()
			delete(b.Env, "CALLBACK_TOKEN_FILE")
			b.CallbackTokenPath, b.AgentBinary = "/var/lib/tok", "/opt/agent/vm-agent"
			return b
		}(),
		"awkward values": func() Boot {
			b := testBoot()
			maps.Copy(b.Env, awkwardValues)
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			ud, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Parse(ud)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, ud)
			}
			want, _ := in.withDefaults()
			if !maps.Equal(out.Env, want.Env) {
				t.Errorf("Parse(Render(b)).Env = %q, want %q", out.Env, want.Env)
			}
			out.Env, want.Env = nil, nil
			if !reflect.DeepEqual(out, want) {
				t.Errorf("Parse(Render(b)) = %+v, want %+v", out, want)
			}
		})
	}
}

func TestRenderWritesTheSteps(t *testing.T) {
	ud, err := Render(testBoot())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#cloud-config\n", `permissions: "0600"`, "path: " + UnitPath,
		`Environment="NODE_ID=n-1"`, "ExecStart=" + AgentPath, "- set -e", "sha256sum --check", "- enable\n    - --now\n    - " + UnitName} {
		if !strings.Contains(ud, want) {
			t.Errorf("user data lacks %q:\n%s", want, ud)
		}
	}
	b := testBoot()
	b.AgentURL, b.AgentSHA256 = "", ""
	if ud, _ = Render(b); strings.Contains(ud, "curl") || !strings.Contains(ud, "daemon-reload") {
		t.Errorf("without a URL, user data should start the image's agent without a download:\n%s", ud)
	}
}

func TestRenderRefuses(t *testing.T) {
	for name, mod := range map[string]func(*Boot){
		"no token":           func(b *Boot) { b.CallbackToken = "" },
		"token with space":   func(b *Boot) { b.CallbackToken = "a b" },
		"no node id":         func(b *Boot) { delete(b.Env, "NODE_ID") },
		"no control plane":   func(b *Boot) { delete(b.Env, "CONTROL_PLANE_URL") },
		"token file differs": func(b *Boot) { b.Env["CALLBACK_TOKEN_FILE"] = "/elsewhere" },
		"bad name":           func(b *Boot) { b.Env["A-B"] = "x" },
		"digit name":         func(b *Boot) { b.Env["1A"] = "x" },
		"NUL":                func(b *Boot) { b.Env["A"] = "x\x00" },
		"bad UTF-8":          func(b *Boot) { b.Env["A"] = "\xff" },
		"sha without url":    func(b *Boot) { b.AgentURL = "" },
		"url without sha":    func(b *Boot) { b.AgentSHA256 = "" },
		"short sha":          func(b *Boot) { b.AgentSHA256 = "abc" },
		"non-hex sha":        func(b *Boot) { b.AgentSHA256 = strings.Repeat("g", 64) },
		"ftp url":            func(b *Boot) { b.AgentURL = "ftp://h/x" },
		"url with space":     func(b *Boot) { b.AgentURL = "https://h/a b" },
		"relative binary":    func(b *Boot) { b.AgentBinary = "vm-agent" },
		"binary with space":  func(b *Boot) { b.AgentBinary = "/opt/vm agent" },
		"over 32 KiB":        func(b *Boot) { b.Env["BIG"] = strings.Repeat("a", MaxUserData) },
	} {
		b := testBoot()
		mod(&b)
		if ud, err := Render(b); err == nil {
			t.Errorf("%s: Render accepted it:\n%.300s", name, ud)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good, err := Render(testBoot())
	if err != nil {
		t.Fatal(err)
	}
	for name, ud := range map[string]string{
		"empty":        "",
		"no header":    strings.TrimPrefix(good, "#cloud-config\n"),
		"no unit":      "#cloud-config\nwrite_files: []\n",
		"no token":     strings.Replace(good, "path: "+TokenPath, "path: /elsewhere", 1),
		"bad escape":   strings.Replace(good, `"NODE_ID=n-1"`, `"NODE_ID=n\q"`, 1),
		"open quote":   strings.Replace(good, `"NODE_ID=n-1"`, `"NODE_ID=n-1`, 1),
		"specifier":    strings.Replace(good, `"NODE_ID=n-1"`, `"NODE_ID=%n"`, 1),
		"not yaml":     "#cloud-config\nwrite_files: [\n",
		"bad sha":      strings.Replace(good, testSHA, "nothex", 1),
		"continuation": strings.Replace(good, `Environment="NODE_ID=n-1"`, `Environment="NODE_ID=n-1" \`, 1),
	} {
		if b, err := Parse(ud); err == nil {
			t.Errorf("%s: Parse = %+v, want an error", name, b)
		}
	}
}

// TestParseReadsSystemdSyntax: Environment= lines written by hand the ways
// systemd allows read as systemd reads them.
func TestParseReadsSystemdSyntax(t *testing.T) {
	for line, want := range map[string]map[string]string{
		`A=1 B=2`:                            {"A": "1", "B": "2"},
		`"A=x y" 'B=it\'s' C=z`:              {"A": "x y", "B": "it's", "C": "z"},
		`A="x y"z`:                           {"A": "x yz"},
		`A=\x41\101\u00e9\s\t`:               {"A": "AAé \t"},
		`A=1 A=2`:                            {"A": "2"},
		`A=50%%`:                             {"A": "50%"},
		`"A=\"q\" \\"`:                       {"A": `"q" \`},
		"A=1\nEnvironment=\nEnvironment=B=2": {"B": "2"}, // an empty assignment resets
	} {
		env := map[string]string{}
		u, err := parseUnit("[Service]\nEnvironment=" + line + "\n")
		if err == nil {
			env = u.env
		}
		if err != nil || !maps.Equal(env, want) {
			t.Errorf("Environment=%s: env %q, %v; want %q", line, env, err, want)
		}
	}
}

// TestUserDataSize: a realistic large boot (a long JWT, a long presigned
// download URL, three control-plane URLs, long ids) stays well inside
// Hetzner's limit.
func TestUserDataSize(t *testing.T) {
	typical, err := Render(testBoot())
	if err != nil {
		t.Fatal(err)
	}
	b := testBoot()
	b.CallbackToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + strings.Repeat("eyJzdWIiOiJub2RlIn0", 40) + "." + strings.Repeat("c2lnbmF0dXJl", 60)
	b.AgentURL = "https://objects.example-storage.com/tdf-releases/vm-agent/v1.2.3/vm-agent-linux-amd64?" +
		"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + strings.Repeat("A", 200) + "&X-Amz-Signature=" + strings.Repeat("f", 1500)
	b.Env["CONTROL_PLANE_URLS"] = "https://tdf-1.example.com:8443,https://tdf-2.example.com:8443,https://tdf-3.example.com:8443"
	b.Env["NODE_ID"] = "node-" + strings.Repeat("0123456789", 6)
	b.Env["TASK_ID"] = "task-" + strings.Repeat("abcdef", 10)
	b.Env["PROJECT_ID"] = "project-" + strings.Repeat("xyz", 20)
	large, err := Render(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("user data: typical %d bytes, large %d bytes, limit %d", len(typical), len(large), MaxUserData)
	if len(large) > MaxUserData/4 {
		t.Errorf("large user data is %d bytes, over a quarter of the %d limit", len(large), MaxUserData)
	}
}
