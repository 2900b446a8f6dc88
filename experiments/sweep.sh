#!/usr/bin/env bash
# Sweep any keys of a config at a chosen budget and gather the results.
#
#   experiments/sweep.sh [--config experiments/r2_chunk8.cfg]
#       [--axis KEY "v1 v2 ..."]...          any numeric or enumerated key
#       [--r "1 2 4"] [--chunk-size "4 8 16"] [--num-layers "2 4 6"] [--seeds "1 2"]
#       [--epochs N] [--train-limit N] [--eval-limit N] [--set k=v]...
#       [--jobs N] [--threads N] [--out DIR] [--name NAME]
#       [--parallel [--sshlogin LOGINS]]     run through GNU parallel
#       [--slurm FILE.sbatch [--slurm-opt OPT]... [--submit]]
#
# Every combination of the values is one run (keys left out keep the
# config's value), ordered and named as `tlb train` expands a config's lists
# (README, "Sweeps"): --axis seed "1 2" is --set "seed=[1, 2]". The runs go
# to DIR/runs, their logs to DIR/logs, and DIR/task.sh I runs run I alone
# (skipping it if finished, resuming it if interrupted).
#   local (default): --jobs N runs N at a time, splitting the cores between them.
#   --parallel: GNU parallel runs the tasks, here or on --sshlogin hosts
#     (parallel's syntax, e.g. "2/node1,2/node2"); the hosts must see this
#     checkout, the data and DIR at the same paths (a shared file system).
#   --slurm FILE: writes FILE, a job-array script (one task per run, with
#     --threads CPUs each), and FILE.report (tlb report); --submit also submits
#     both, the report as a dependent job (sbatch --dependency=afterok:JOBID).
# At the end (local, --parallel) DIR holds results.csv, results.md and results.png.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

config=experiments/r2_chunk8.cfg; epochs=""; train_limit=""; eval_limit=""
jobs=1; threads=""; out=""; name=sweep; extra=(); axes=()
mode=local; sshlogin=""; slurm=""; slurm_opts=(); submit=0
axis() { axes+=(--set "$1=[$(echo "$2" | xargs | sed 's/ \+/, /g')]"); }
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config=$2; shift 2 ;;
        --axis|--set-axis) [ $# -ge 3 ] || { echo "sweep.sh: $1 KEY \"VALUES\"" >&2; exit 2; }
            axis "$2" "$3"; shift 3 ;;
        --r) axis r "$2"; shift 2 ;;
        --chunk-size) axis chunk_size "$2"; shift 2 ;;
        --num-layers) axis num_layers "$2"; shift 2 ;;
        --seeds) axis seed "$2"; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --train-limit) train_limit=$2; shift 2 ;;
        --eval-limit) eval_limit=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --set) extra+=(--set "$2"); shift 2 ;;
        --parallel) mode=parallel; shift ;;
        --sshlogin) sshlogin=$2; shift 2 ;;
        --slurm) mode=slurm; slurm=$2; shift 2 ;;
        --slurm-opt) slurm_opts+=("$2"); shift 2 ;;
        --submit) submit=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out="runs/sweep-$(date +%Y%m%d-%H%M%S)"
case "$out" in /*) ;; *) out="$repo/$out" ;; esac
# TLB_BIN: a prebuilt binary (tests); otherwise build ./tlb here.
if [ -n "${TLB_BIN:-}" ]; then
    tlb=$(cd "$(dirname "$TLB_BIN")" && pwd)/$(basename "$TLB_BIN")
else
    scripts/install-deps.sh
    make -s -j"$(nproc)" tlb
    tlb=$repo/tlb
fi
[ -n "$threads" ] || { threads=$(( $(nproc) / jobs )); [ "$threads" -ge 1 ] || threads=1; }

budget=()
[ -n "$epochs" ] && budget+=(--set "epochs=$epochs")
[ -n "$train_limit" ] && budget+=(--set "train_limit=$train_limit")
[ -n "$eval_limit" ] && budget+=(--set "eval_limit=$eval_limit")
args=(train "$config" "${budget[@]}" "${extra[@]}" "${axes[@]}" --set "threads=$threads"
      --set "out_dir=$out/runs" --set "name=$name")

# The grid, as tlb expands it (a bad value stops here, with its message).
listing=$("$tlb" "${args[@]}" --list) || exit 2
mapfile -t dirs < <(printf '%s\n' "$listing" | cut -f2)
n=${#dirs[@]}
mkdir -p "$out/runs" "$out/logs"

# One task's script body: run $i of the grid (i from $1 or Slurm's array index).
task_body() {
    printf 'set -euo pipefail\n'
    printf 'cd %q\n' "$repo"
    printf 'i=${1:-${SLURM_ARRAY_TASK_ID:?run index: task.sh I, or a Slurm array task}}\n'
    printf 'dirs=('; printf '%q ' "${dirs[@]}"; printf ')\n'
    printf 'dir=${dirs[$i]}; log=%q/logs/$(basename "${dir%%-*}").log\n' "$out"
    printf 'if [ -f "$dir/summary.json" ]; then echo "finished already: $dir"; exit 0; fi\n'
    printf 'if [ -f "$dir/checkpoint.safetensors" ]; then\n'
    printf '    %q train --resume "$dir" >>"$log" 2>&1\n' "$tlb"
    printf 'else\n'
    printf '    %q' "$tlb"; printf ' %q' "${args[@]}"; printf ' --run "$i" >"$log" 2>&1\n'
    printf 'fi\n'
    printf 'echo "done: $dir"\n'
}
{ printf '#!/usr/bin/env bash\n# Run I of the sweep in %s (experiments/sweep.sh).\n' "$out"; task_body; } >"$out/task.sh"
{
    printf '#!/usr/bin/env bash\n# The results of the sweep in %s (experiments/sweep.sh).\n' "$out"
    printf 'set -euo pipefail\ncd %q\n' "$repo"
    printf 'done=(); for d in'; printf ' %q' "${dirs[@]}"; printf '; do [ -f "$d/summary.json" ] && done+=("$d"); done\n'
    printf '[ "${#done[@]}" -gt 0 ] || { echo "sweep: no run finished" >&2; exit 1; }\n'
    printf '[ "${#done[@]}" -eq %d ] || echo "sweep: only ${#done[@]} of %d runs finished" >&2\n' "$n" "$n"
    printf '%q report --out %q "${done[@]}"\n' "$tlb" "$out"
} >"$out/report.sh"
chmod +x "$out/task.sh" "$out/report.sh"
echo "sweep of $n runs in $out ($threads threads each)"

if [ "$mode" = slurm ]; then
    case "$slurm" in /*) ;; *) slurm="$repo/$slurm" ;; esac
    {
        printf '#!/usr/bin/env bash\n'
        printf '#SBATCH --job-name=tlb-sweep\n#SBATCH --array=0-%d\n#SBATCH --cpus-per-task=%d\n' $((n - 1)) "$threads"
        printf '#SBATCH --output=%s/logs/slurm-%%A_%%a.out\n' "$out"
        for o in "${slurm_opts[@]}"; do printf '#SBATCH %s\n' "$o"; done
        printf '# One array task per run of the sweep in %s (experiments/sweep.sh):\n' "$out"
        printf '%s\n' "$listing" | sed 's/^/#   /'
        printf '# Submit it with the report as a dependent job:\n'
        printf '#   jid=$(sbatch --parsable %s) && sbatch --dependency=afterok:$jid %s.report\n' "$slurm" "$slurm"
        task_body
    } >"$slurm"
    {
        printf '#!/usr/bin/env bash\n#SBATCH --job-name=tlb-sweep-report\n#SBATCH --cpus-per-task=1\n'
        printf '#SBATCH --output=%s/logs/slurm-report-%%j.out\n' "$out"
        for o in "${slurm_opts[@]}"; do printf '#SBATCH %s\n' "$o"; done
        printf 'exec bash %q\n' "$out/report.sh"
    } >"$slurm.report"
    echo "wrote $slurm ($n array tasks) and $slurm.report"
    if [ "$submit" = 1 ]; then
        jid=$(sbatch --parsable "$slurm")
        rid=$(sbatch --parsable --dependency="afterok:${jid%%;*}" "$slurm.report")
        echo "submitted array job $jid and report job $rid (after it)"
    else
        echo "submit: jid=\$(sbatch --parsable $slurm) && sbatch --dependency=afterok:\$jid $slurm.report"
    fi
    exit 0
fi

if [ "$mode" = parallel ]; then
    popts=(--jobs "$jobs" --joblog "$out/logs/parallel.joblog")
    [ -n "$sshlogin" ] && popts=(--sshlogin "$sshlogin" --joblog "$out/logs/parallel.joblog")
    parallel "${popts[@]}" bash "$out/task.sh" ::: $(seq 0 $((n - 1))) || echo "sweep.sh: some runs failed (see $out/logs)"
else
    running=0
    for ((i = 0; i < n; i++)); do
        bash "$out/task.sh" "$i" || echo "FAILED: ${dirs[$i]} (see $out/logs)" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    done
    wait
fi
bash "$out/report.sh"
cat "$out/results.md"
