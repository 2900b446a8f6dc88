#!/usr/bin/env bash
# A real single-node Slurm for one test: munged, slurmctld and slurmd from
# Debian's slurm-wlm and munge, with their config, key, sockets, state and
# logs in a temp dir, talking over this machine's loopback on ports
# 16817/16818. Submits experiments/sweep.sh's array script (--slurm --submit)
# with the report as a dependent job, waits for the results and stops the
# daemons it started (by their pids).
#
#   tests/slurm_local.sh OUT_DIR -- SWEEP_ARGS...
#
# Exit status: 0 results written; 1 a step failed; 77 Slurm cannot run here
# (not installed, or slurmd did not come up), with the reason on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; shift; [ "${1:-}" = -- ] && shift
for b in munged slurmctld slurmd sbatch squeue; do
    command -v "$b" >/dev/null || { echo "slurm_local: $b is not installed (apt-get install slurm-wlm munge)" >&2; exit 77; }
done
tmp=$(mktemp -d /tmp/tlb_slurm_XXXXXX)
pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
    rm -rf "$tmp"
}
trap stop EXIT
host=$(hostname -s)
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/key" bs=1024 count=1 status=none
chmod 700 "$tmp/munge"; chmod 400 "$tmp/munge/key"
munged --force --key-file="$tmp/munge/key" --socket="$tmp/munge/socket" --pid-file="$tmp/munge/pid" \
    --log-file="$tmp/munge/log" --seed-file="$tmp/munge/seed"
pids+=("$(cat "$tmp/munge/pid")")
cpus=$(nproc)
cat >"$tmp/slurm.conf" <<EOF
ClusterName=tlbtest
MailProg=/bin/true
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -f "$SLURM_CONF" -i
for _ in $(seq 50); do [ -s "$tmp/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$tmp/slurmctld.pid")")
slurmd -f "$SLURM_CONF"
for _ in $(seq 50); do [ -s "$tmp/slurmd.pid" ] && break; sleep 0.1; done
if [ ! -s "$tmp/slurmd.pid" ]; then
    echo "slurm_local: slurmd did not start:" >&2; tail -5 "$tmp/slurmd.log" >&2 || true; exit 77
fi
pids+=("$(cat "$tmp/slurmd.pid")")
# The node must come up idle.
for _ in $(seq 100); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
    case "$state" in idle*|mix*) break ;; esac
    sleep 0.2
done
case "$state" in idle*|mix*) ;; *)
    echo "slurm_local: the node did not come up (state '$state'):" >&2; tail -5 "$tmp/slurmd.log" >&2 || true; exit 77 ;;
esac

experiments/sweep.sh "$@" --out "$out" --slurm "$tmp/sweep.sbatch" --submit
# Wait for both jobs to leave the queue, then for the report.
for _ in $(seq 600); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.5
done
[ -f "$out/results.csv" ] || {
    echo "slurm_local: no results; slurmctld log:" >&2; tail -20 "$tmp/slurmctld.log" >&2
    cat "$out"/logs/slurm-* >&2 2>/dev/null || true; exit 1; }
echo "slurm_local: results in $out"
