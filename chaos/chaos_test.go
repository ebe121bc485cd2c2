package chaos_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tdf-project/tdf/chaos"
	"github.com/tdf-project/tdf/e2e"
)

// Flags of the long process run (TestChaosProcess); `make chaos` sets
// them from its variables.
var (
	flagDuration   = flag.Duration("chaos.duration", 0, "length of the fault phase of TestChaosProcess (0: skip it)")
	flagKills      = flag.Int("chaos.kills", 10, "leader kills (SIGKILL + restart)")
	flagPauses     = flag.Int("chaos.pauses", 4, "leader pauses (SIGSTOP longer than the election timeout, then SIGCONT)")
	flagPartitions = flag.Int("chaos.partitions", 4, "leader partitions (raft traffic cut while steps are in flight, then healed)")
	flagDiskFulls  = flag.Int("chaos.diskfulls", 2, "leader disks filled (each node's data dir on a small tmpfs; needs root), held 3s, then freed")
	flagRate       = flag.Float64("chaos.rate", 5, "task submissions per second, all clients together")
	flagClients    = flag.Int("chaos.clients", 4, "concurrent clients")
	flagSeed       = flag.Uint64("chaos.seed", 1, "seed of the fault order, their timing and the clients' choices")
	flagReport     = flag.String("chaos.report", "", "directory for report.json, summary.txt, history.json (and linearizability.html on failure); default: a temporary one")
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2e.RemoveBinary()
	os.Exit(code)
}

// TestChaosProcess is the process-level chaos run: `make chaos`, or
//
//	go test ./chaos -run TestChaosProcess -v -timeout 60m -args -chaos.duration=2m
//
// with the -chaos.* flags above.
func TestChaosProcess(t *testing.T) {
	if *flagDuration <= 0 {
		t.Skip("set -chaos.duration (e.g. `make chaos`) for the long process run")
	}
	runProcess(t, chaos.Plan{
		Workload: chaos.WorkloadConfig{Clients: *flagClients, Rate: *flagRate, Seed: *flagSeed},
		Nemesis: chaos.NemesisConfig{Kills: *flagKills, Pauses: *flagPauses, Partitions: *flagPartitions, DiskFulls: *flagDiskFulls,
			Duration: *flagDuration, Seed: *flagSeed},
		Warmup:    3 * time.Second,
		ReportDir: *flagReport,
	})
}

// TestChaosShort is the CI version, part of `make test`: a minute of
// faults with a few kills, pauses and partitions under a light load.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	// A task-status callback lost in a leader change is made up by the
	// run reconcile (every 2 s here): no task may fail.
	rep := runProcess(t, chaos.Plan{
		Workload: chaos.WorkloadConfig{Clients: 3, Rate: 2, Seed: 7},
		Nemesis:  chaos.NemesisConfig{Kills: 3, Pauses: 2, Partitions: 2, Duration: 50 * time.Second, Seed: 7},
		Warmup:   2 * time.Second,
	}, "--run-reconcile-interval", "2s", "--run-finish-grace", "1s")
	if len(rep.Failed) > 0 {
		t.Errorf("%d tasks failed: %v", len(rep.Failed), rep.Failed)
	}
}

func runProcess(t *testing.T, p chaos.Plan, serverArgs ...string) *chaos.Report {
	t.Helper()
	if p.ReportDir == "" {
		p.ReportDir = filepath.Join(t.TempDir(), "report")
	}
	p.Logf = t.Logf
	var target *chaos.ProcessTarget
	// Registered here, it runs after the processes are killed and before
	// the temporary directories go.
	t.Cleanup(func() {
		if t.Failed() && target != nil {
			keepEvidence(t, p.ReportDir, target.C.LogPaths())
		}
	})
	target = chaos.StartProcessTarget(t, e2e.Options{ExtraArgs: serverArgs})
	if p.Nemesis.DiskFulls > 0 {
		smallDisks(t, target, &p)
	}
	rep, err := chaos.Run(target, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report in %s\n%s", p.ReportDir, rep.Summary())
	if !rep.Pass {
		t.Errorf("the checker found violations (see %s)", p.ReportDir)
	}
	want := map[chaos.FaultKind]int{chaos.FaultKill: p.Nemesis.Kills, chaos.FaultPause: p.Nemesis.Pauses, chaos.FaultPartition: p.Nemesis.Partitions,
		chaos.FaultDiskFull: p.Nemesis.DiskFulls}
	for k, n := range want {
		if rep.Faults[string(k)] != n {
			t.Errorf("%d %s faults injected, planned %d", rep.Faults[string(k)], k, n)
		}
	}
	if rep.Submitted == 0 || rep.Reads == 0 {
		t.Errorf("the workload did nothing: %d submissions, %d reads", rep.Submitted, rep.Reads)
	}
	return rep
}

// smallDisks puts every node's data dir on a tmpfs with 64 MiB of room, for
// the disk-full faults. Where mounting is not allowed (not root, no
// CAP_SYS_ADMIN) the run goes on without them, unless CI=true.
func smallDisks(t *testing.T, target *chaos.ProcessTarget, p *chaos.Plan) {
	err := target.SmallDisks(64<<20, t.Cleanup)
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("disk-full faults need a tmpfs per node: %v", err)
	}
	t.Logf("NO DISK-FULL FAULTS in this run: %v", err)
	p.Nemesis.DiskFulls = 0
}

// keepEvidence copies a failed run's report and every process's log into a
// directory that outlives the test (under TDF_E2E_LOG_DIR if set, else
// the system's temporary directory), so that a rare failure can be read
// after CI cleaned up.
func keepEvidence(t *testing.T, reportDir string, logs []string) {
	dir, err := os.MkdirTemp(os.Getenv("TDF_E2E_LOG_DIR"), "tdf-chaos-failed-")
	if err != nil {
		t.Logf("cannot keep the report and logs: %v", err)
		return
	}
	files := logs
	if ents, err := os.ReadDir(reportDir); err == nil {
		for _, e := range ents {
			files = append(files, filepath.Join(reportDir, e.Name()))
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644)
		}
		if err != nil {
			t.Logf("keeping %s: %v", f, err)
		}
	}
	t.Logf("kept the report and the processes' logs of this failed run in %s", dir)
}
