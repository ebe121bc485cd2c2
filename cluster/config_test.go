package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func validConfig() Config {
	c := DefaultConfig()
	c.NodeID, c.DataDir, c.RaftAddr, c.APIURL = "n1", "/tmp/x", "127.0.0.1:7001", "http://127.0.0.1:8001"
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"in-memory transport needs no raft address", func(c *Config) {
			c.RaftAddr = ""
			_, c.Transport = raft.NewInmemTransport("")
		}, ""},
		{"no node id", func(c *Config) { c.NodeID = "" }, "node id"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data dir"},
		{"no raft address", func(c *Config) { c.RaftAddr = "" }, "raft address"},
		{"no API URL", func(c *Config) { c.APIURL = "" }, "API URL"},
		{"heartbeat below floor", func(c *Config) { c.HeartbeatTimeout = time.Millisecond }, "heartbeat timeout"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }, "election timeout"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }, "leader lease timeout"},
		{"lease below floor", func(c *Config) { c.LeaderLeaseTimeout = time.Millisecond }, "leader lease timeout"},
		{"commit timeout below 1ms", func(c *Config) { c.CommitTimeout = 0 }, "commit timeout"},
		{"max append entries 0", func(c *Config) { c.MaxAppendEntries = 0 }, "max append entries"},
		{"max append entries 1025", func(c *Config) { c.MaxAppendEntries = 1025 }, "max append entries"},
		{"apply timeout 0", func(c *Config) { c.ApplyTimeout = 0 }, "apply timeout"},
		{"raft address without port", func(c *Config) { c.RaftAddr = "127.0.0.1" }, "raft address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error naming %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %q, want it to name %q", err, tt.want)
			}
		})
	}
}

func TestDefaultConfigRaftMapping(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	c.Logger = hclog.NewNullLogger()
	rc := c.raftConfig()
	if err := raft.ValidateConfig(rc); err != nil {
		t.Fatalf("raft.ValidateConfig(raftConfig()) = %v", err)
	}
	if rc.LocalID != "n1" || rc.HeartbeatTimeout != c.HeartbeatTimeout || rc.ElectionTimeout != c.ElectionTimeout ||
		rc.LeaderLeaseTimeout != c.LeaderLeaseTimeout || rc.MaxAppendEntries != c.MaxAppendEntries ||
		rc.SnapshotThreshold != c.SnapshotThreshold || rc.TrailingLogs != c.TrailingLogs {
		t.Errorf("raftConfig() = %+v, does not carry the configuration %+v", rc, c)
	}
}

func TestParseBootstrap(t *testing.T) {
	tests := []struct {
		in      string
		want    []string // id=addr
		wantErr string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"n1=127.0.0.1:7001", []string{"n1=127.0.0.1:7001"}, ""},
		{"n1=127.0.0.1:7001, n2=127.0.0.1:7002,n3=127.0.0.1:7003",
			[]string{"n1=127.0.0.1:7001", "n2=127.0.0.1:7002", "n3=127.0.0.1:7003"}, ""},
		{"n1", nil, "want id=host:port"},
		{"=127.0.0.1:7001", nil, "want id=host:port"},
		{"n1=", nil, "want id=host:port"},
		{"n1=127.0.0.1", nil, "missing port"},
		{"n1=127.0.0.1:7001,n1=127.0.0.1:7002", nil, "appears twice"},
		{"n1=127.0.0.1:7001,", nil, "want id=host:port"},
	}
	for _, tt := range tests {
		got, err := ParseBootstrap(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseBootstrap(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBootstrap(%q) = %v", tt.in, err)
			continue
		}
		var flat []string
		for _, s := range got {
			if s.Suffrage != raft.Voter {
				t.Errorf("ParseBootstrap(%q): %s is not a voter", tt.in, s.ID)
			}
			flat = append(flat, string(s.ID)+"="+string(s.Address))
		}
		if strings.Join(flat, ",") != strings.Join(tt.want, ",") {
			t.Errorf("ParseBootstrap(%q) = %v, want %v", tt.in, flat, tt.want)
		}
	}
}

func TestJoinRequestValidate(t *testing.T) {
	tests := []struct {
		req  JoinRequest
		want string
	}{
		{JoinRequest{ID: "n4", RaftAddr: "127.0.0.1:7004", APIAddr: "http://127.0.0.1:8004"}, ""},
		{JoinRequest{ID: "n4", RaftAddr: "127.0.0.1:7004", APIAddr: "https://tdf.example"}, ""},
		{JoinRequest{RaftAddr: "127.0.0.1:7004", APIAddr: "http://x"}, "id is required"},
		{JoinRequest{ID: "n4", APIAddr: "http://x"}, "raft_addr is required"},
		{JoinRequest{ID: "n4", RaftAddr: "127.0.0.1:7004"}, "api_addr"},
		{JoinRequest{ID: "n4", RaftAddr: "127.0.0.1:7004", APIAddr: "ftp://x"}, "api_addr"},
	}
	for _, tt := range tests {
		err := tt.req.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.req, err, tt.want)
		}
	}
}
