#!/usr/bin/env bash
# Sweep one or more axes of a config at a chosen budget and gather the results.
#
#   experiments/sweep.sh [--config experiments/r2_chunk8.cfg] [--r "1 2 4"]
#       [--chunk-size "4 8 16"] [--num-layers "2 4 6"] [--epochs N]
#       [--train-limit N] [--eval-limit N] [--jobs N] [--out DIR] [--set k=v]...
#
# Every combination of the given values is one run (axes left out keep the
# config's value). --jobs N runs N at a time, splitting the cores between them.
# At the end DIR holds results.csv, results.md and results.png.
set -euo pipefail
cd "$(dirname "$0")/.."

config=experiments/r2_chunk8.cfg; rs=""; cs=""; ls=""; epochs=""; train_limit=""; eval_limit=""
jobs=1; out=""; extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config=$2; shift 2 ;;
        --r) rs=$2; shift 2 ;;
        --chunk-size) cs=$2; shift 2 ;;
        --num-layers) ls=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --train-limit) train_limit=$2; shift 2 ;;
        --eval-limit) eval_limit=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --set) extra+=(--set "$2"); shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out="runs/sweep-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out/runs"
scripts/install-deps.sh
make -s -j"$(nproc)" tlb

budget=()
[ -n "$epochs" ] && budget+=(--set "epochs=$epochs")
[ -n "$train_limit" ] && budget+=(--set "train_limit=$train_limit")
[ -n "$eval_limit" ] && budget+=(--set "eval_limit=$eval_limit")
threads=$(( $(nproc) / jobs )); [ "$threads" -ge 1 ] || threads=1

combos=()
for r in ${rs:-_}; do for c in ${cs:-_}; do for l in ${ls:-_}; do combos+=("$r $c $l"); done; done; done

run_one() {
    local r=$1 c=$2 l=$3 name=sweep sets=()
    [ "$r" != _ ] && { sets+=(--set "r=$r"); name+="-r$r"; }
    [ "$c" != _ ] && { sets+=(--set "chunk_size=$c"); name+="-chunk$c"; }
    [ "$l" != _ ] && { sets+=(--set "num_layers=$l"); name+="-L$l"; }
    ./tlb train "$config" "${budget[@]}" "${extra[@]}" "${sets[@]}" --set "threads=$threads" \
        --set "out_dir=$out/runs" --set "name=$name" >"$out/$name.log" 2>&1 \
        && echo "done: $name" || echo "FAILED: $name (see $out/$name.log)"
}

running=0
for combo in "${combos[@]}"; do
    # shellcheck disable=SC2086
    run_one $combo &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

mapfile -t finished < <(find "$out/runs" -mindepth 2 -maxdepth 2 -name summary.json -printf '%h\n' | sort)
[ "${#finished[@]}" -gt 0 ] || { echo "sweep.sh: no run finished" >&2; exit 1; }
./tlb report --out "$out" "${finished[@]}"
cat "$out/results.md"
