package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fakeDockerCLI answers docker and docker-compose commands from a script and
// records every call.
type fakeDockerCLI struct {
	calls  []string
	envs   [][]string
	answer func(cmd string) (string, error)
}

func (f *fakeDockerCLI) run(_ context.Context, env []string, name string, args ...string) (string, error) {
	cmd := name + " " + strings.Join(args, " ")
	f.calls = append(f.calls, cmd)
	f.envs = append(f.envs, env)
	return f.answer(cmd)
}

const dockerInspectN1 = `{"tdfchaostest_cluster":{"IPAMConfig":{"IPv4Address":"10.213.9.11"},"Aliases":["8bc86b80be5f","tdf","n1"],"IPAddress":"10.213.9.11"},` +
	`"tdfchaostest_edge_n1":{"IPAMConfig":null,"Aliases":["8bc86b80be5f","n1"],"IPAddress":"172.19.0.2"}}`

func scriptedDocker(ports map[string]string) func(string) (string, error) {
	return func(cmd string) (string, error) {
		switch {
		case strings.HasPrefix(cmd, "docker network ls"):
			return "aaa\nbbb\n", nil
		case strings.HasPrefix(cmd, "docker network inspect"):
			return "172.17.0.0/16 10.213.0.0/24 \n", nil
		case strings.Contains(cmd, " ps -q "):
			svc := cmd[strings.LastIndex(cmd, " ")+1:]
			return "id-" + svc + "\n", nil
		case strings.HasPrefix(cmd, "docker port "):
			svc := strings.Fields(cmd)[2][len("id-"):]
			return ports[svc], nil
		case strings.HasPrefix(cmd, "docker inspect"):
			return dockerInspectN1, nil
		}
		return "", nil
	}
}

func TestDockerTargetCommands(t *testing.T) {
	ports := map[string]string{"n1": "127.0.0.1:49001\n", "n2": "127.0.0.1:49002\n", "n3": "127.0.0.1:49003\n", "fakecloud": "127.0.0.1:49000\n"}
	f := &fakeDockerCLI{answer: scriptedDocker(ports)}
	d, err := StartDocker(context.Background(), DockerOptions{ComposeFile: "dc.yml", Project: "tdfchaostest", Run: f.run})
	if err != nil {
		t.Fatal(err)
	}
	if d.opts.Net == "10.213.0" || !strings.HasPrefix(d.opts.Net, "10.213.") {
		t.Errorf("network %s: want a 10.213.N other than the taken 10.213.0", d.opts.Net)
	}
	if up := f.calls[2]; up != "docker-compose -f dc.yml -p tdfchaostest up -d" {
		t.Errorf("up command %q", up)
	}
	if env := f.envs[2]; !slices.Contains(env, "TDF_NET="+d.opts.Net) || !slices.Contains(env, "TDF_N1_PORT=") || !slices.Contains(env, "TDF_IMAGE=tdf:dev") {
		t.Errorf("up environment %q", env)
	}
	if d.APIURL("n2") != "http://127.0.0.1:49002" || d.LedgerURL() != "http://127.0.0.1:49000" {
		t.Errorf("URLs: n2 %s, ledger %s", d.APIURL("n2"), d.LedgerURL())
	}

	f.calls = nil
	ports["n1"] = "127.0.0.1:49011\n" // a restarted container may get a new port
	for _, step := range []func(string) error{d.Kill, d.Restart, d.Pause, d.Resume, d.Isolate, d.Heal} {
		if err := step("n1"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"docker kill --signal KILL id-n1",
		"docker start id-n1",
		"docker port id-n1 8000/tcp",
		"docker pause id-n1",
		"docker unpause id-n1",
		"docker inspect --format {{json .NetworkSettings.Networks}} id-n1",
		"docker network disconnect tdfchaostest_cluster id-n1",
		"docker network connect --ip 10.213.9.11 --alias 8bc86b80be5f --alias tdf --alias n1 tdfchaostest_cluster id-n1",
	}
	if !slices.Equal(f.calls, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	if d.APIURL("n1") != "http://127.0.0.1:49011" {
		t.Errorf("n1 after restart: %s", d.APIURL("n1"))
	}
	if err := d.Heal("n1"); err == nil {
		t.Errorf("Heal of a node that is not isolated: no error")
	}
	if err := d.Kill("n9"); err == nil {
		t.Errorf("Kill of an unknown node: no error")
	}

	f.calls = nil
	if err := d.Pause("n2"); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	want = []string{"docker pause id-n2", "docker unpause id-n2", "docker-compose -f dc.yml -p tdfchaostest down -v --remove-orphans --timeout 5"}
	if !slices.Equal(f.calls, want) {
		t.Errorf("close: commands %q, want %q", f.calls, want)
	}
}

// TestDockerTargetRetriesTakenPool: docker reports the chosen subnet
// taken (another run got it first); the target tears down and tries
// another.
func TestDockerTargetRetriesTakenPool(t *testing.T) {
	ports := map[string]string{"n1": "127.0.0.1:1\n", "n2": "127.0.0.1:2\n", "n3": "127.0.0.1:3\n", "fakecloud": "127.0.0.1:4\n"}
	ups := 0
	base := scriptedDocker(ports)
	f := &fakeDockerCLI{answer: func(cmd string) (string, error) {
		if strings.HasSuffix(cmd, " up -d") {
			if ups++; ups == 1 {
				return "", errors.New("Pool overlaps with other one on this address space")
			}
		}
		return base(cmd)
	}}
	if _, err := StartDocker(context.Background(), DockerOptions{ComposeFile: "dc.yml", Run: f.run}); err != nil {
		t.Fatal(err)
	}
	downs := 0
	for _, c := range f.calls {
		if strings.Contains(c, " down -v") {
			downs++
		}
	}
	if ups != 2 || downs != 1 {
		t.Errorf("%d ups and %d downs, want 2 and 1: %q", ups, downs, f.calls)
	}

	f = &fakeDockerCLI{answer: func(cmd string) (string, error) {
		if strings.HasSuffix(cmd, " up -d") {
			return "", errors.New("image tdf:dev not found")
		}
		return base(cmd)
	}}
	if _, err := StartDocker(context.Background(), DockerOptions{ComposeFile: "dc.yml", Run: f.run}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("up failing otherwise: %v, want that error at once", err)
	}
}

func TestParsePublished(t *testing.T) {
	for out, want := range map[string]string{
		"127.0.0.1:49153\n":               "127.0.0.1:49153",
		"0.0.0.0:80\n127.0.0.1:49154\n":   "127.0.0.1:49154",
		"[::1]:5\n127.0.0.1:7\n":          "127.0.0.1:7",
		"0.0.0.0:49153\n":                 "",
		"":                                "",
		"Error: No public port published": "",
	} {
		got, err := parseDockerPort(out)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("parsePublished(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	ep, err := parseDockerEndpoint(dockerInspectN1, "tdfchaostest_cluster")
	if err != nil || ep.IP != "10.213.9.11" || !slices.Equal(ep.Aliases, []string{"8bc86b80be5f", "tdf", "n1"}) {
		t.Errorf("cluster dockerEndpoint %+v, %v", ep, err)
	}
	if ep, err = parseDockerEndpoint(dockerInspectN1, "tdfchaostest_edge_n1"); err != nil || ep.IP != "172.19.0.2" {
		t.Errorf("edge dockerEndpoint (no IPAM config: the assigned address) %+v, %v", ep, err)
	}
	if _, err := parseDockerEndpoint(dockerInspectN1, "other_cluster"); err == nil {
		t.Errorf("missing network: no error")
	}
	if _, err := parseDockerEndpoint("not json", "x"); err == nil {
		t.Errorf("bad JSON: no error")
	}
	got := dockerConnectArgs("net", "c1", dockerEndpoint{IP: "10.0.0.2", Aliases: []string{"a", "b"}})
	if want := "network connect --ip 10.0.0.2 --alias a --alias b net c1"; strings.Join(got, " ") != want {
		t.Errorf("connectArgs = %q, want %q", got, want)
	}
}

func TestPickNet(t *testing.T) {
	used := []netip.Prefix{netip.MustParsePrefix("10.213.5.0/24"), netip.MustParsePrefix("10.213.6.128/25")}
	fixed := func(n int) func(int) int { return func(int) int { return n } }
	for start, want := range map[int]string{4: "10.213.4", 5: "10.213.7", 6: "10.213.7"} {
		if got, err := pickDockerNet(used, fixed(start)); err != nil || got != want {
			t.Errorf("pickNet from %d = %q, %v; want %s", start, got, err, want)
		}
	}
	if _, err := pickDockerNet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, fixed(0)); err == nil {
		t.Errorf("every /24 taken: no error")
	}
	for i := range 3 {
		if got, _ := pickDockerNet(nil, fixed(i*100)); got != fmt.Sprintf("10.213.%d", i*100) {
			t.Errorf("free start %d: %s", i*100, got)
		}
	}
}
