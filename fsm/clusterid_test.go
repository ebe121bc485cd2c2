package fsm

import (
	"bytes"
	"io"
	"testing"
)

func TestClusterIDSetOnceKeptInSnapshot(t *testing.T) {
	f := New()
	apply := func(c Command) *Result {
		t.Helper()
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return f.ApplyCommand(1, b)
	}
	if r := apply(SetClusterID{ID: "not hex"}); r.Err == nil {
		t.Fatalf("a malformed id was accepted")
	}
	apply(SetClusterID{ID: "0123456789abcdef"})
	if r := apply(SetClusterID{ID: "fedcba9876543210"}); !r.Unchanged || f.ClusterID() != "0123456789abcdef" {
		t.Fatalf("a second id replaced the first: %q", f.ClusterID())
	}
	var buf bytes.Buffer
	if _, err := f.WriteSnapshotAt(&buf); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(io.NopCloser(&buf)); err != nil || g.ClusterID() != "0123456789abcdef" {
		t.Fatalf("restored id %q, %v", g.ClusterID(), err)
	}
	apply(SetClusterID{ID: "fedcba9876543210", Replace: true})
	if f.ClusterID() != "fedcba9876543210" {
		t.Fatalf("replace did not take: %q", f.ClusterID())
	}
}
