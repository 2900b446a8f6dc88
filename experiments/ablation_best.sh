#!/usr/bin/env bash
# The ablation of issue 12: from the faithful recipe (experiments/r2_chunk8.cfg)
# to experiments/best_30ep.cfg, one change at a time, each row a run at the
# same budget (one seed: 42).
#
#   experiments/ablation_best.sh [--epochs N] [--train-limit N] [--eval-limit N]
#       [--from K] [--out DIR]
#
# Row k applies changes 1..k on top of r2_chunk8.cfg (row 6 is best_30ep.cfg
# at the budget; row 7 is row 6 back at 48x48); the warmup is scaled to the
# budget (2 of 30 epochs in best_30ep.cfg). --from K skips rows before K
# (a resumed campaign). Runs one at a time with nice -n 10; DIR gets a log per
# row and, at the end, one line per row in DIR/ablation.tsv
# (row, change, val_acc, test_acc, train images/s, seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=2; train_limit=5000; eval_limit=2000; from=0; out=runs/ablation
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs=$2; shift 2 ;;
        --train-limit) train_limit=$2; shift 2 ;;
        --eval-limit) eval_limit=$2; shift 2 ;;
        --from) from=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "ablation_best.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
scripts/install-deps.sh
make -s -j"$(nproc)" tlb
warmup=$(awk -v e="$epochs" 'BEGIN { printf "%.6g", e * 2 / 30 }')

# Change k (cumulative). Keep in step with experiments/best_30ep.cfg.
names=("seed (r2_chunk8.cfg)"
       "image_size 32 (no upscaling)"
       "batch 128, learning_rate 1e-3"
       "cosine schedule, warmup, min_lr 1e-5"
       "weight_decay 0.05"
       "label_smoothing 0.1"
       "dropout 0.1 (ffn, attn)"
       "row 6 at image_size 48 (upscaled, 2.25x the work): the size check")
changes=(""
         "image_size=32"
         "batch_size=128 learning_rate=0.001"
         "lr_schedule=cosine warmup_epochs=$warmup min_lr=0.00001"
         "weight_decay=0.05"
         "label_smoothing=0.1"
         "ffn_drop=0.1 attn_drop=0.1"
         "image_size=48")

sets=(--set "epochs=$epochs" --set "train_limit=$train_limit" --set "eval_limit=$eval_limit" --set "out_dir=$out/runs")
for k in "${!changes[@]}"; do
    for kv in ${changes[$k]}; do sets+=(--set "$kv"); done
    [ "$k" -ge "$from" ] || continue
    name="row$k"
    if ! nice -n 10 ./tlb train experiments/r2_chunk8.cfg "${sets[@]}" --set "name=$name" >"$out/$name.log" 2>&1; then
        echo "FAILED: $name (see $out/$name.log)" >&2
        exit 1
    fi
    summary=$(ls -d "$out"/runs/"$name"-*/summary.json | head -1)
    field() { awk -v k="\"$1\":" '$1 == k { gsub(",", "", $2); print $2 }' "$summary"; }
    printf '%s\t%s\t%.4f\t%.4f\t%.0f\t%.0f\n' "$k" "${names[$k]}" "$(field validation_accuracy)" \
        "$(field test_accuracy)" "$(field train_images_per_second)" "$(field wall_seconds)" \
        | tee -a "$out/ablation.tsv"
done
