#!/bin/sh
# chaos/run.sh — the process-level chaos run: three `tdf server` processes
# and a `tdf fakecloud` on loopback, a workload of clients, and a nemesis
# that kills, pauses, partitions the leader and fills its disk; then the checker. The Go
# harness (chaos.Run, driven by TestChaosProcess) does the work; this only
# turns flags into its -chaos.* test flags.
#
#   chaos/run.sh [flags]
#
#   -duration D     length of the fault phase (default 2m)
#   -kills N        leader kills: SIGKILL, then restart on the same data (default 10)
#   -pauses N       leader pauses: SIGSTOP for 2s (> election timeout), then SIGCONT (default 4)
#   -partitions N   leader partitions: raft traffic cut for 3s, then healed (default 4)
#   -diskfulls N    leader disks filled: each node's data dir on its own small tmpfs
#                   (needs root; without, the run goes on without them), the leader's
#                   filled to the last byte for 3s, then freed (default 2)
#   -rate R         task submissions per second, all clients together (default 3)
#   -clients N      concurrent clients; each submits, then does 2 consistent reads (default 4)
#   -seed S         seed of the fault order and timing and the clients' choices (default 1)
#   -report DIR     where report.json, summary.txt, history.json (and, on a
#                   linearizability failure, linearizability.html) go (default ./chaos-report)
#   -race           build the nodes and the harness with the race detector
#
# The faults are spread evenly over the duration, in a seeded random order.
# Exit status 0 means the checker passed. Node logs are kept under
# DIR/logs.
set -eu
duration=2m kills=10 pauses=4 partitions=4 diskfulls=2 rate=3 clients=4 seed=1 report=chaos-report race=""
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
	case "$1" in
	-duration|--duration) duration=$2; shift 2 ;;
	-kills|--kills) kills=$2; shift 2 ;;
	-pauses|--pauses) pauses=$2; shift 2 ;;
	-partitions|--partitions) partitions=$2; shift 2 ;;
	-diskfulls|--diskfulls) diskfulls=$2; shift 2 ;;
	-rate|--rate) rate=$2; shift 2 ;;
	-clients|--clients) clients=$2; shift 2 ;;
	-seed|--seed) seed=$2; shift 2 ;;
	-report|--report) report=$2; shift 2 ;;
	-race|--race) race=-race; shift ;;
	-h|-help|--help) usage 0 ;;
	*) echo "chaos/run.sh: unknown flag $1" >&2; usage 2 ;;
	esac
done
cd "$(dirname "$0")/.."
mkdir -p "$report"
report=$(cd "$report" && pwd)
if [ -n "$race" ]; then export TDF_E2E_RACE=1; else export TDF_E2E_RACE=0; fi
export TDF_E2E_LOG_DIR="$report/logs"
# The test's own timeout: the fault phase plus time to settle and check.
exec go test $race -count=1 -v -run '^TestChaosProcess$' -timeout 90m ./chaos/ -args \
	-chaos.duration="$duration" -chaos.kills="$kills" -chaos.pauses="$pauses" -chaos.partitions="$partitions" -chaos.diskfulls="$diskfulls" \
	-chaos.rate="$rate" -chaos.clients="$clients" -chaos.seed="$seed" -chaos.report="$report"
