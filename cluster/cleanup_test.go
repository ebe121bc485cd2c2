package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestDeadServerPolicy(t *testing.T) {
	now := time.Now()
	voters := func(ids ...string) []raft.Server {
		var out []raft.Server
		for _, id := range ids {
			out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id)})
		}
		return out
	}
	long, short := now.Add(-time.Hour), now.Add(-time.Second)
	p := deadServerPolicy{After: time.Minute, MinQuorum: 3}
	cases := []struct {
		name    string
		servers []raft.Server
		down    map[string]time.Time
		want    string
	}{
		{"all healthy", voters("n1", "n2", "n3"), nil, ""},
		{"3 voters, one dead: no replacement yet, keep it", voters("n1", "n2", "n3"), map[string]time.Time{"n2": long}, ""},
		{"replacement joined: the dead one goes", voters("n1", "n2", "n3", "n4"), map[string]time.Time{"n2": long}, "n2"},
		{"unreachable, but not for long enough", voters("n1", "n2", "n3", "n4"), map[string]time.Time{"n2": short}, ""},
		{"another voter suspect: healthy ones would not be a majority", voters("n1", "n2", "n3", "n4"), map[string]time.Time{"n2": long, "n3": short}, ""},
		{"two dead of five: one at a time, lowest id first", voters("n1", "n2", "n3", "n4", "n5"), map[string]time.Time{"n4": long, "n2": long}, "n2"},
		{"the leader itself is never removed", voters("n1", "n2", "n3", "n4"), map[string]time.Time{"n1": long}, ""},
		{"non-voters do not count", append(voters("n1", "n2", "n3"), raft.Server{Suffrage: raft.Nonvoter, ID: "n4"}), map[string]time.Time{"n2": long}, ""},
	}
	for _, c := range cases {
		if got, _ := p.pick(c.servers, "n1", c.down, now); got != c.want {
			t.Errorf("%s: pick = %q, want %q", c.name, got, c.want)
		}
	}
	// MinQuorum 2 lets a three-node cluster shed a dead voter (and so
	// tolerate no further failure until a replacement joins).
	p.MinQuorum = 2
	if got, _ := p.pick(voters("n1", "n2", "n3"), "n1", map[string]time.Time{"n2": long}, now); got != "n2" {
		t.Errorf("MinQuorum 2: pick = %q, want n2", got)
	}
}
