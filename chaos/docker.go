package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DockerOptions configure a docker-compose cluster (docker-compose.cluster.yml).
type DockerOptions struct {
	// ComposeFile is the path of docker-compose.cluster.yml (required).
	ComposeFile string
	// Project is the compose project name; default tdfchaos<random>, so
	// that runs never share containers, networks or volumes.
	Project string
	// Image is the tdf image (default tdf:dev, what `make image` builds).
	Image string
	// Net is the first three octets of the cluster network's /24 (the
	// compose file's TDF_NET); default: a free 10.213.N, chosen again if
	// docker finds the pool taken.
	Net string
	// Compose is the compose command (default docker-compose, v1).
	Compose string
	// Logf, if set, reports each action.
	Logf func(format string, args ...any)
	// Run runs a command with extra environment and returns its standard
	// output (default: os/exec). Tests replace it.
	Run func(ctx context.Context, env []string, name string, args ...string) (string, error)
}

// Service names of docker-compose.cluster.yml.
const (
	dockerFakecloud      = "fakecloud"
	dockerClusterNetwork = "cluster"
	dockerAPIPort        = "8000/tcp"
	dockerFakecloudPort  = "9000/tcp"
	// dockerCommandTimeout bounds one docker command; `up` and `down`
	// get composeTimeout (containers on a loaded machine start slowly).
	dockerCommandTimeout = 2 * time.Minute
	composeTimeout       = 5 * time.Minute
)

var dockerNodes = []string{"n1", "n2", "n3"}

// Docker is a compose cluster as a chaos Target: APIs are reached on the
// ports the containers publish on 127.0.0.1; Kill is docker kill, Pause
// docker pause, Isolate docker network disconnect from the cluster network
// (the node's own edge network, which only publishes its port, stays).
type Docker struct {
	opts DockerOptions
	env  []string

	mu         sync.Mutex
	containers map[string]string         // service → container id
	urls       map[string]string         // service → http://127.0.0.1:<port>
	detached   map[string]dockerEndpoint // isolated node → how it was attached
	paused     map[string]bool
}

// dockerEndpoint is a container's attachment to a network, to restore it.
type dockerEndpoint struct {
	IP      string
	Aliases []string
}

var _ Target = (*Docker)(nil)

// StartDocker brings the compose project up and finds its containers and
// published ports. It does not wait for a leader. On error everything it
// created is removed again.
func StartDocker(ctx context.Context, opts DockerOptions) (*Docker, error) {
	if opts.ComposeFile == "" {
		return nil, errors.New("docker target: ComposeFile is required")
	}
	if opts.Project == "" {
		opts.Project = fmt.Sprintf("tdfchaos%08x", rand.Uint32())
	}
	if opts.Image == "" {
		opts.Image = "tdf:dev"
	}
	if opts.Compose == "" {
		opts.Compose = "docker-compose"
	}
	if opts.Run == nil {
		opts.Run = dockerExec
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	d := &Docker{opts: opts, containers: map[string]string{}, urls: map[string]string{},
		detached: map[string]dockerEndpoint{}, paused: map[string]bool{}}
	fixedNet := opts.Net != ""
	for attempt := 0; ; attempt++ {
		if !fixedNet {
			used, err := d.usedSubnets(ctx)
			if err != nil {
				return nil, err
			}
			if d.opts.Net, err = pickDockerNet(used, rand.IntN); err != nil {
				return nil, err
			}
		}
		d.env = composeEnv(d.opts)
		err := d.up(ctx)
		if err == nil {
			break
		}
		_ = d.down()
		// Another project may have taken the pool between the look and up.
		if fixedNet || attempt == 4 || !strings.Contains(err.Error(), "overlap") {
			return nil, err
		}
	}
	if err := d.discover(ctx); err != nil {
		_ = d.down()
		return nil, err
	}
	return d, nil
}

// composeEnv is the environment of every compose command: the image, the
// network and random host ports (an empty TDF_*_PORT publishes on a port
// docker picks).
func composeEnv(o DockerOptions) []string {
	return []string{"TDF_IMAGE=" + o.Image, "TDF_NET=" + o.Net,
		"TDF_N1_PORT=", "TDF_N2_PORT=", "TDF_N3_PORT=", "TDF_FAKECLOUD_PORT=", "TDF_LB_PORT="}
}

func (d *Docker) composeArgs(args ...string) []string {
	return append([]string{"-f", d.opts.ComposeFile, "-p", d.opts.Project}, args...)
}

func (d *Docker) up(ctx context.Context) error {
	d.opts.Logf("docker: compose project %s up (network %s.0/24)", d.opts.Project, d.opts.Net)
	ctx, cancel := context.WithTimeout(ctx, composeTimeout)
	defer cancel()
	_, err := d.opts.Run(ctx, d.env, d.opts.Compose, d.composeArgs("up", "-d")...)
	return err
}

func (d *Docker) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), composeTimeout)
	defer cancel()
	_, err := d.opts.Run(ctx, d.env, d.opts.Compose, d.composeArgs("down", "-v", "--remove-orphans", "--timeout", "5")...)
	return err
}

// discover finds each service's container and published port.
func (d *Docker) discover(ctx context.Context) error {
	for _, svc := range append([]string{dockerFakecloud}, dockerNodes...) {
		out, err := d.opts.Run(ctx, d.env, d.opts.Compose, d.composeArgs("ps", "-q", svc)...)
		if err != nil {
			return err
		}
		id := strings.TrimSpace(out)
		if id == "" || strings.ContainsAny(id, " \n") {
			return fmt.Errorf("docker target: service %s has container ids %q, want one", svc, id)
		}
		d.mu.Lock()
		d.containers[svc] = id
		d.mu.Unlock()
		if err := d.refreshURL(ctx, svc); err != nil {
			return err
		}
	}
	return nil
}

// refreshURL reads the host port a service's container publishes; a
// container started again may get a new one.
func (d *Docker) refreshURL(ctx context.Context, svc string) error {
	port := dockerAPIPort
	if svc == dockerFakecloud {
		port = dockerFakecloudPort
	}
	out, err := d.docker(ctx, "port", d.container(svc), port)
	if err != nil {
		return err
	}
	hostPort, err := parseDockerPort(out)
	if err != nil {
		return fmt.Errorf("docker target: %s: %w", svc, err)
	}
	d.mu.Lock()
	d.urls[svc] = "http://" + hostPort
	d.mu.Unlock()
	return nil
}

// parseDockerPort picks the 127.0.0.1 binding from `docker port` output
// ("127.0.0.1:49153", one binding a line).
func parseDockerPort(out string) (string, error) {
	for _, line := range strings.Split(out, "\n") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(line))
		if err == nil && ap.Addr() == netip.MustParseAddr("127.0.0.1") && ap.Port() != 0 {
			return ap.String(), nil
		}
	}
	return "", fmt.Errorf("no port published on 127.0.0.1 in %q", strings.TrimSpace(out))
}

func (d *Docker) container(svc string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.containers[svc]
}

func (d *Docker) docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerCommandTimeout)
	defer cancel()
	return d.opts.Run(ctx, nil, "docker", args...)
}

func (d *Docker) act(node, what string, args ...string) error {
	if d.container(node) == "" {
		return fmt.Errorf("docker target: no node %q", node)
	}
	d.opts.Logf("docker: %s %s", what, node)
	_, err := d.docker(context.Background(), args...)
	return err
}

// Project is the compose project name.
func (d *Docker) Project() string { return d.opts.Project }

// Nodes lists the node ids.
func (d *Docker) Nodes() []string { return append([]string(nil), dockerNodes...) }

// APIURL is the node's API on its published 127.0.0.1 port.
func (d *Docker) APIURL(node string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.urls[node]
}

// LedgerURL is the fake cloud's base URL.
func (d *Docker) LedgerURL() string { return d.APIURL(dockerFakecloud) }

// Kill sends SIGKILL to the node's container.
func (d *Docker) Kill(node string) error {
	return d.act(node, "kill", "kill", "--signal", "KILL", d.container(node))
}

// Restart starts the killed container again, on the same volume.
func (d *Docker) Restart(node string) error {
	if err := d.act(node, "start", "start", d.container(node)); err != nil {
		return err
	}
	return d.refreshURL(context.Background(), node)
}

// Pause freezes the node's processes (the cgroup freezer).
func (d *Docker) Pause(node string) error {
	if err := d.act(node, "pause", "pause", d.container(node)); err != nil {
		return err
	}
	d.mu.Lock()
	d.paused[node] = true
	d.mu.Unlock()
	return nil
}

// Resume thaws a paused node.
func (d *Docker) Resume(node string) error {
	if err := d.act(node, "unpause", "unpause", d.container(node)); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.paused, node)
	d.mu.Unlock()
	return nil
}

// networkName is the compose network's docker name (compose v1:
// <project>_<network>).
func (d *Docker) networkName() string { return d.opts.Project + "_" + dockerClusterNetwork }

// Isolate disconnects the node from the cluster network, remembering its
// address and DNS aliases (n1) for Heal.
func (d *Docker) Isolate(node string) error {
	id := d.container(node)
	if id == "" {
		return fmt.Errorf("docker target: no node %q", node)
	}
	out, err := d.docker(context.Background(), "inspect", "--format", "{{json .NetworkSettings.Networks}}", id)
	if err != nil {
		return err
	}
	ep, err := parseDockerEndpoint(out, d.networkName())
	if err != nil {
		return fmt.Errorf("docker target: %s: %w", node, err)
	}
	if err := d.act(node, "network disconnect", "network", "disconnect", d.networkName(), id); err != nil {
		return err
	}
	d.mu.Lock()
	d.detached[node] = ep
	d.mu.Unlock()
	return nil
}

// parseDockerEndpoint reads a network's attachment from the JSON of a
// container's .NetworkSettings.Networks.
func parseDockerEndpoint(inspectJSON, network string) (dockerEndpoint, error) {
	var nets map[string]struct {
		IPAMConfig *struct{ IPv4Address string }
		IPAddress  string
		Aliases    []string
	}
	if err := json.Unmarshal([]byte(inspectJSON), &nets); err != nil {
		return dockerEndpoint{}, fmt.Errorf("container networks %q: %w", strings.TrimSpace(inspectJSON), err)
	}
	n, ok := nets[network]
	if !ok {
		return dockerEndpoint{}, fmt.Errorf("not attached to network %s", network)
	}
	ep := dockerEndpoint{IP: n.IPAddress, Aliases: n.Aliases}
	if n.IPAMConfig != nil && n.IPAMConfig.IPv4Address != "" {
		ep.IP = n.IPAMConfig.IPv4Address
	}
	return ep, nil
}

// dockerConnectArgs reattach a container with its address and aliases.
func dockerConnectArgs(network, container string, ep dockerEndpoint) []string {
	args := []string{"network", "connect"}
	if ep.IP != "" {
		args = append(args, "--ip", ep.IP)
	}
	for _, a := range ep.Aliases {
		args = append(args, "--alias", a)
	}
	return append(args, network, container)
}

// Heal connects an isolated node back, at the same address and aliases.
func (d *Docker) Heal(node string) error {
	d.mu.Lock()
	ep, ok := d.detached[node]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("docker target: %s is not isolated", node)
	}
	if err := d.act(node, "network connect", dockerConnectArgs(d.networkName(), d.container(node), ep)...); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.detached, node)
	d.mu.Unlock()
	return nil
}

// Logs returns the last lines of a service's log (nodes, "fakecloud").
func (d *Docker) Logs(svc string, lines int) string {
	out, err := d.opts.Run(context.Background(), nil, "docker", "logs", "--tail", fmt.Sprint(lines), d.container(svc))
	if err != nil {
		return fmt.Sprintf("(docker logs %s: %v)", svc, err)
	}
	return out
}

// Close thaws paused nodes (a paused container does not stop) and removes
// the project: containers, networks and volumes.
func (d *Docker) Close() error {
	d.mu.Lock()
	var paused []string
	for n := range d.paused {
		paused = append(paused, n)
	}
	d.mu.Unlock()
	for _, n := range paused {
		_ = d.Resume(n)
	}
	d.opts.Logf("docker: compose project %s down", d.opts.Project)
	return d.down()
}

// usedSubnets lists the IPv4 subnets of every docker network.
func (d *Docker) usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	ids, err := d.docker(ctx, "network", "ls", "-q")
	if err != nil {
		return nil, err
	}
	args := append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, strings.Fields(ids)...)
	out, err := d.docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			used = append(used, p)
		}
	}
	return used, nil
}

// pickDockerNet chooses a 10.213.N.0/24 that overlaps none of the used subnets,
// and returns its first three octets.
func pickDockerNet(used []netip.Prefix, intn func(int) int) (string, error) {
	start := intn(256)
	for i := range 256 {
		n := (start + i) % 256
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(n), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return fmt.Sprintf("10.213.%d", n), nil
		}
	}
	return "", errors.New("docker target: every 10.213.N.0/24 overlaps a docker network")
}

// dockerExec runs a command; its error carries the standard error.
func dockerExec(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
