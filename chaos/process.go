package chaos

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tdf-project/tdf/e2e"
)

// ServerArgs are the `tdf server` flags of a chaos cluster: fault injection
// on (partitions), and timers short enough that tasks run through all
// eight steps and their nodes are destroyed within a run (an idle session
// ends after 3s, a warm node goes after 5s).
var ServerArgs = append([]string{"--fault-injection"}, e2e.PipelineServerArgs...)

// CloudArgs are the `tdf fakecloud` flags: small delays, so that steps are
// in flight most of the time.
var CloudArgs = e2e.PipelineCloudArgs

// ProcessTarget is a Target of three `tdf server` processes and a `tdf
// fakecloud` on loopback, run by the e2e harness. Its methods must be
// called from the test's goroutine (the harness fails the test on a
// process that will not die).
type ProcessTarget struct {
	C *e2e.Cluster
}

// StartProcessTarget starts the cluster and waits for a leader and for
// every node to publish a signing key. opts.ExtraArgs come after
// ServerArgs; a nil opts.FakeCloud gets CloudArgs.
func StartProcessTarget(tb testing.TB, opts e2e.Options) *ProcessTarget {
	tb.Helper()
	opts.ExtraArgs = append(slices.Clone(ServerArgs), opts.ExtraArgs...)
	if opts.FakeCloud == nil {
		opts.FakeCloud = &e2e.FakeCloudOptions{Args: slices.Clone(CloudArgs)}
	}
	c := e2e.StartCluster(tb, opts)
	c.Leader()
	c.WaitSigningKeys()
	return &ProcessTarget{C: c}
}

func (p *ProcessTarget) node(id string) (*e2e.Node, error) {
	for _, n := range p.C.Nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q", id)
}

// Nodes implements Target.
func (p *ProcessTarget) Nodes() []string {
	var ids []string
	for _, n := range p.C.Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// APIURL implements Target.
func (p *ProcessTarget) APIURL(node string) string {
	if n, err := p.node(node); err == nil {
		return n.URL
	}
	return ""
}

// LedgerURL implements Target.
func (p *ProcessTarget) LedgerURL() string { return p.C.Cloud.URL }

// Kill implements Target (SIGKILL).
func (p *ProcessTarget) Kill(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	p.C.Kill(n)
	return nil
}

// Restart implements Target: the same flags and data directory.
func (p *ProcessTarget) Restart(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	p.C.Restart(n)
	return nil
}

// Pause implements Target (SIGSTOP).
func (p *ProcessTarget) Pause(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	return p.C.Pause(n)
}

// Resume implements Target (SIGCONT).
func (p *ProcessTarget) Resume(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	return p.C.Resume(n)
}

// Isolate implements Target through the node's fault-injection endpoint.
func (p *ProcessTarget) Isolate(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	return p.C.Isolate(n)
}

// Heal implements Target.
func (p *ProcessTarget) Heal(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	return p.C.Heal(n)
}

// Close implements Target. The processes belong to the test: its cleanup
// kills them (and prints their logs' tails if it failed).
func (p *ProcessTarget) Close() error { return nil }
