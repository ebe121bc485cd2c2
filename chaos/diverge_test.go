package chaos

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tdf-project/tdf/fsm"
)

// fakeReplicas is a Target of HTTP servers that answer the state-hash
// route from an FSM each; Restart replaces a node's FSM by rebuild(node),
// as replaying its log would.
type fakeReplicas struct {
	mu      sync.Mutex
	fsms    map[string]*fsm.FSM
	srv     map[string]*httptest.Server
	rebuild func(node string) *fsm.FSM
}

func newFakeReplicas(t *testing.T, fsms map[string]*fsm.FSM, rebuild func(string) *fsm.FSM) *fakeReplicas {
	r := &fakeReplicas{fsms: fsms, srv: map[string]*httptest.Server{}, rebuild: rebuild}
	for id := range fsms {
		r.srv[id] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.mu.Lock()
			f := r.fsms[id]
			r.mu.Unlock()
			if req.URL.Query().Get("snapshot") == "true" {
				_, _ = f.WriteSnapshotAt(w)
				return
			}
			idx, sum, _ := f.Hash()
			_ = json.NewEncoder(w).Encode(NodeHash{NodeID: id, AppliedIndex: idx, Hash: sum})
		}))
		t.Cleanup(r.srv[id].Close)
	}
	return r
}

func (r *fakeReplicas) Nodes() []string           { return []string{"n1", "n2", "n3"} }
func (r *fakeReplicas) APIURL(node string) string { return r.srv[node].URL }
func (r *fakeReplicas) LedgerURL() string         { return "" }
func (r *fakeReplicas) Kill(string) error         { return nil }
func (r *fakeReplicas) Restart(node string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fsms[node] = r.rebuild(node)
	return nil
}
func (r *fakeReplicas) Pause(string) error   { return nil }
func (r *fakeReplicas) Resume(string) error  { return nil }
func (r *fakeReplicas) Isolate(string) error { return nil }
func (r *fakeReplicas) Heal(string) error    { return nil }
func (r *fakeReplicas) Close() error         { return nil }

// replica applies a log; extraClaimTerm, if set, is a claim only this
// replica took at the last index (in place of the others' member record).
func replica(t *testing.T, extraClaimTerm uint64) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	cmds := []fsm.Command{
		fsm.SubmitTask{TaskID: "t-1", Spec: fsm.TaskSpec{ProjectID: "p", UserID: "u", Prompt: "x", Repository: "r"}, At: t0},
		fsm.DecideStep{TaskID: "t-1", Step: fsm.StepNodeSelection, Leader: "n1", At: t0},
		fsm.RegisterMember{Member: fsm.Member{ID: "n1"}},
	}
	if extraClaimTerm != 0 {
		cmds[2] = fsm.StepStarted{TaskID: "t-1", Step: fsm.StepNodeProvisioning, Attempt: 1, Term: extraClaimTerm, Leader: "n1", At: t0}
	}
	for i, c := range cmds {
		data, err := fsm.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		f.ApplyCommand(uint64(i+1), data)
	}
	return f
}

func TestDiagnoseDivergence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rebuild func(t *testing.T) *fsm.FSM // n1 after its restart
		verdict string
	}{
		{"drift outside the log", func(t *testing.T) *fsm.FSM { return replica(t, 0) }, "n1: agrees after a restart"},
		{"another log", func(t *testing.T) *fsm.FSM { return replica(t, 7) }, "n1: still differs after a restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := newFakeReplicas(t, map[string]*fsm.FSM{"n1": replica(t, 7), "n2": replica(t, 0), "n3": replica(t, 0)},
				func(string) *fsm.FSM { return tc.rebuild(t) })
			probe := NewProbe(target)
			hs, err := hashes(probe, target.Nodes())
			if err != nil {
				t.Fatal(err)
			}
			if len(CheckConverged(hs)) == 0 {
				t.Fatalf("the replicas agree: %v", hs)
			}
			var logged []string
			got := strings.Join(diagnoseDivergence(target, probe, target.Nodes(), hs, func(f string, a ...any) {
				logged = append(logged, f)
			}), "\n")
			for _, want := range []string{"task t-1 differs", "in_flight: null vs true", "member n1 only in the first", tc.verdict} {
				if !strings.Contains(got, want) {
					t.Errorf("diagnosis does not say %q:\n%s", want, got)
				}
			}
			t.Logf("diagnosis:\n%s", got)
			if len(logged) != 2 {
				t.Errorf("%d findings logged, want 2 (where, why)", len(logged))
			}
		})
	}
}

// The local state a node streams hashes to its state hash.
func TestLocalStateIsWhatIsHashed(t *testing.T) {
	target := newFakeReplicas(t, map[string]*fsm.FSM{"n1": replica(t, 0), "n2": replica(t, 0), "n3": replica(t, 0)}, nil)
	st, err := localState(target, "n2")
	if err != nil {
		t.Fatal(err)
	}
	_, want, _ := target.fsms["n2"].Hash()
	if sum := sha256.Sum256(st); hex.EncodeToString(sum[:]) != want || !bytes.HasPrefix(st, []byte("TDFSNAP")) {
		t.Fatalf("local state %.20q does not hash to %s", st, want)
	}
}
