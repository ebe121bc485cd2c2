package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestControlPlaneBootstrapDefaultNeverReplacesASetURL(t *testing.T) {
	a := newApplier(t)
	if got := a.f.ControlPlaneURL(); got != "" {
		t.Fatalf("fresh FSM: ControlPlaneURL = %q, want empty", got)
	}
	// The first leader's default is taken.
	if r := a.apply(SetControlPlane{URL: "http://127.0.0.1:8001", IfUnset: true}); r.Err != nil || r.Unchanged {
		t.Fatalf("first default: %+v", r)
	}
	// A later leader's default (its own API URL) changes nothing.
	if r := a.apply(SetControlPlane{URL: "http://127.0.0.1:8002", IfUnset: true}); r.Err != nil || !r.Unchanged {
		t.Fatalf("second default: %+v, want a duplicate", r)
	}
	if got := a.f.ControlPlaneURL(); got != "http://127.0.0.1:8001" {
		t.Fatalf("after a second default: %q, want the first", got)
	}
	// An operator's change replaces it; repeating it is a no-op.
	lb := "https://tdf.example.com"
	if r := a.apply(SetControlPlane{URL: lb}); r.Err != nil || r.Unchanged {
		t.Fatalf("operator's URL: %+v", r)
	}
	if r := a.apply(SetControlPlane{URL: lb}); !r.Unchanged {
		t.Fatalf("same URL again: %+v, want a duplicate", r)
	}
	if r := a.apply(SetControlPlane{URL: "http://127.0.0.1:8003", IfUnset: true}); !r.Unchanged || a.f.ControlPlaneURL() != lb {
		t.Fatalf("default after the operator's URL: %+v, URL %q", r, a.f.ControlPlaneURL())
	}
}

func TestControlPlaneRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8000", "ftp://lb", "http://", "http://lb/", "http://u:p@lb",
		"http://lb?x=1", "http://lb#f", "mailto:x@y", "http://lb/" + strings.Repeat("a", 3000)} {
		a := newApplier(t)
		a.apply(SetControlPlane{URL: "http://127.0.0.1:8001"})
		r := a.apply(SetControlPlane{URL: u})
		if !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("SetControlPlane(%q): err %v, want ErrInvalid", u, r.Err)
		}
		if got := a.f.ControlPlaneURL(); got != "http://127.0.0.1:8001" {
			t.Errorf("after SetControlPlane(%q): URL %q changed", u, got)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8000", "https://tdf.example.com", "http://lb:8000/tdf"} {
		if err := ValidateControlPlaneURL(u); err != nil {
			t.Errorf("ValidateControlPlaneURL(%q) = %v, want nil", u, err)
		}
	}
}

func TestControlPlaneSurvivesSnapshotAndOldSnapshotsLoad(t *testing.T) {
	// A snapshot of a state without the URL is what binaries from before
	// the setting wrote: it has no such field, and loads with none.
	old := newApplier(t)
	submit(old, "t1")
	oldSnap := snapshotBytes(t, old.f)
	if bytes.Contains(oldSnap, []byte("control_plane_url")) {
		t.Fatalf("a state without the URL writes the field")
	}
	a := newApplier(t)
	submit(a, "t1")
	a.apply(SetControlPlane{URL: "http://lb.test:8000"})
	snap := snapshotBytes(t, a.f)
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got := restored.ControlPlaneURL(); got != "http://lb.test:8000" {
		t.Fatalf("restored URL %q", got)
	}
	if !bytes.Equal(snapshotBytes(t, restored), snap) {
		t.Fatalf("restored state encodes differently")
	}
	// Restoring the old snapshot over it clears the URL (the new leader
	// then sets its default again).
	if err := restored.Restore(io.NopCloser(bytes.NewReader(oldSnap))); err != nil {
		t.Fatalf("Restore(old) = %v", err)
	}
	if got := restored.ControlPlaneURL(); got != "" {
		t.Fatalf("URL after restoring an old snapshot: %q, want none", got)
	}
}

func TestControlPlaneCommandIsSkippableByOlderBinaries(t *testing.T) {
	b, err := Encode(SetControlPlane{URL: "http://lb.test"})
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(b[0]) != CmdSetControlPlane|IgnoreUnknown {
		t.Fatalf("type byte %#x, want %#x", b[0], CmdSetControlPlane|IgnoreUnknown)
	}
	c, err := Decode(b)
	if err != nil || c != (SetControlPlane{URL: "http://lb.test"}) {
		t.Fatalf("Decode = %#v, %v", c, err)
	}
}
