package hetzner

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud/fakecloud"
)

// needTool returns the tool's path, or skips saying what is missing (and
// fails under CI=true, where .ci/run installs it).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (Debian package %s) is required under CI=true", name, pkg)
		}
		t.Skipf("%s (Debian package %s) is not installed; skipping", name, pkg)
	}
	return p
}

// TestDebianClientsSeeWhatTdfSees: Hetzner's own clients, as Debian ships
// them (the hcloud CLI and python3-hcloud), list the fake's servers and
// firewalls exactly as tdf's provider sees them: same ids and names, the
// firewall applied to every server.
func TestDebianClientsSeeWhatTdfSees(t *testing.T) {
	hcloudCLI := needTool(t, "hcloud", "hcloud-cli")
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import hcloud").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-hcloud is required under CI=true: %v %s", err, out)
		}
		t.Skipf("python3-hcloud is not installed (%v); skipping", err)
	}
	fo := fakecloud.DefaultOptions()
	fo.CreateDuration, fo.RateLimit = 50*time.Millisecond, -1
	e := newEnv(t, fo, Options{Firewall: testFirewall()})
	ctx := ctxFor(t, time.Minute)
	for _, name := range []string{"node-a", "node-b"} {
		if _, _, err := e.p.CreateServer(ctx, spec(name)); err != nil {
			t.Fatal(err)
		}
	}
	ours, err := e.p.ListServers(ctx, "managed-by=tdf")
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		Servers   map[string]int64   `json:"servers"`   // name → id
		Firewalls map[string][]int64 `json:"firewalls"` // name → servers applied to
	}
	want := seen{Servers: map[string]int64{}, Firewalls: map[string][]int64{}}
	for _, s := range ours {
		want.Servers[s.Name] = s.ID
		want.Firewalls[testFirewall().name()] = append(want.Firewalls[testFirewall().name()], s.ID)
	}
	slices.Sort(want.Firewalls[testFirewall().name()])
	env := append(os.Environ(), "HCLOUD_TOKEN="+fakecloud.DefaultToken, "HCLOUD_ENDPOINT="+e.ts.URL+"/v1")

	// The hcloud CLI.
	var cli seen
	cli.Servers, cli.Firewalls = map[string]int64{}, map[string][]int64{}
	var servers []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	runJSON(t, env, &servers, hcloudCLI, "server", "list", "-l", "managed-by=tdf", "-o", "json")
	for _, s := range servers {
		cli.Servers[s.Name] = s.ID
	}
	var firewalls []struct {
		Name      string `json:"name"`
		AppliedTo []struct {
			Server struct {
				ID int64 `json:"id"`
			} `json:"server"`
		} `json:"applied_to"`
	}
	runJSON(t, env, &firewalls, hcloudCLI, "firewall", "list", "-o", "json")
	for _, f := range firewalls {
		ids := []int64{}
		for _, a := range f.AppliedTo {
			ids = append(ids, a.Server.ID)
		}
		slices.Sort(ids)
		cli.Firewalls[f.Name] = ids
	}
	compareSeen(t, "hcloud CLI", cli.Servers, cli.Firewalls, want.Servers, want.Firewalls)

	// python3-hcloud.
	var py seen
	runJSON(t, env, &py, python, "-c", `
import json, os
from hcloud import Client
c = Client(token=os.environ["HCLOUD_TOKEN"], api_endpoint=os.environ["HCLOUD_ENDPOINT"])
print(json.dumps({
  "servers": {s.name: s.id for s in c.servers.get_all(label_selector="managed-by=tdf")},
  "firewalls": {f.name: sorted(a.server.id for a in f.applied_to) for f in c.firewalls.get_all()},
}))`)
	compareSeen(t, "python3-hcloud", py.Servers, py.Firewalls, want.Servers, want.Firewalls)
}

func runJSON(t *testing.T, env []string, v any, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%s %v: %v in %s", name, args, err, out)
	}
}

func compareSeen(t *testing.T, who string, servers map[string]int64, firewalls map[string][]int64, wantS map[string]int64, wantF map[string][]int64) {
	t.Helper()
	if len(servers) != len(wantS) {
		t.Errorf("%s lists servers %v, tdf sees %v", who, servers, wantS)
	}
	for name, id := range wantS {
		if servers[name] != id {
			t.Errorf("%s lists server %s as %d, tdf sees %d", who, name, servers[name], id)
		}
	}
	if len(firewalls) != len(wantF) {
		t.Errorf("%s lists firewalls %v, tdf sees %v", who, firewalls, wantF)
	}
	for name, ids := range wantF {
		if !slices.Equal(firewalls[name], ids) {
			t.Errorf("%s lists firewall %s on %v, tdf sees it on %v", who, name, firewalls[name], ids)
		}
	}
	t.Logf("%s: servers %v, firewalls %v — as tdf sees them", who, servers, firewalls)
}
