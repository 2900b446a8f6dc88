#!/usr/bin/env bash
# The slow-state study of issue 10, by one command:
#
#   experiments/study_state.sh [--out runs/study_state] [--epochs N] [--train-limit N]
#       [--eval-limit N] [--lrs "5e-4 1e-3 2e-3"] [--lr-epochs N] [--lr-train-limit N]
#       [--lr-eval-limit N] [--lr VALUE] [--token-seeds "1 2"] [--full] [--jobs N]
#
# On experiments/study_state.cfg (the seed model, warmup-cosine schedule):
#   1. lr/      the schedule's peak learning_rate: each of --lrs on the seed's
#               cell (state_init zeros, readout last_fast), seed 1, --lr-epochs
#               epochs (--lr-train-limit/--lr-eval-limit images, default the
#               same as the others); the best validation accuracy wins;
#               --lr VALUE skips this stage
#   2. cells/   state_init (zeros, learned, sinusoid) x readout (last_fast,
#               state) x seeds 1, 2 at that learning rate
#   3. tokens/  num_state_tokens 4 and 16 for the best cell (highest mean
#               validation accuracy), seeds --token-seeds; report tokens-all/ puts
#               them beside the cell's own runs (num_state_tokens 8)
# Each stage is an experiments/sweep.sh run (finished runs are skipped, so
# the script resumes where it stopped), under nice -n 10.
# Default budget (reduced, for a shared 2-core machine): 10 epochs of the
# first 512 training images, batch 64 (80 steps), 400 validation and 400 test images.
# --full: the issue's budget, 10 epochs on all 40,000 training images and the
# full validation (10,000) and test (10,000) sets (still batch 64: add --set batch_size=N to sweep.sh for more).
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/study_state; epochs=10; train_limit=512; eval_limit=400
lrs="5e-4 1e-3 2e-3"; lr_epochs=3; jobs=1; lr=""; lr_train_limit=""; lr_eval_limit=""; token_seeds="1 2"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --train-limit) train_limit=$2; shift 2 ;;
        --eval-limit) eval_limit=$2; shift 2 ;;
        --lrs) lrs=$2; shift 2 ;;
        --lr-epochs) lr_epochs=$2; shift 2 ;;
        --lr-train-limit) lr_train_limit=$2; shift 2 ;;
        --lr-eval-limit) lr_eval_limit=$2; shift 2 ;;
        --lr) lr=$2; shift 2 ;;
        --token-seeds) token_seeds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --full) train_limit=0; eval_limit=0; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "study_state.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
sweep() { nice -n 10 experiments/sweep.sh --config experiments/study_state.cfg --jobs "$jobs" --threads $(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 )) \
          --train-limit "$train_limit" --eval-limit "$eval_limit" "$@"; }
[ -n "$lr_train_limit" ] || lr_train_limit=$train_limit
[ -n "$lr_eval_limit" ] || lr_eval_limit=$eval_limit
# The value of column $2 in the row of results.csv $1 with the highest val_acc_mean.
best() {
    awk -F, -v want="$2" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["val_acc_mean"] > top || NR == 2 { top = $col["val_acc_mean"]; v = $col[want] } END { print v }' "$1"
}

if [ -z "$lr" ]; then
    echo "== 1. peak learning rate: $lrs ($lr_epochs epochs, seed 1, zeros / last_fast)"
    sweep --name lr --out "$out/lr" --epochs "$lr_epochs" --set "warmup_epochs=1" --axis learning_rate "$lrs" --seeds 1 \
          --train-limit "$lr_train_limit" --eval-limit "$lr_eval_limit"
    lr=$(best "$out/lr/results.csv" learning_rate)
    echo "picked learning_rate $lr"
fi

echo "== 2. state_init x readout x 2 seeds at learning_rate $lr ($epochs epochs)"
sweep --name cell --out "$out/cells" --epochs "$epochs" --set "learning_rate=$lr" \
      --axis state_init "zeros learned sinusoid" --axis readout "last_fast state" --seeds "1 2"
init=$(best "$out/cells/results.csv" state_init)
readout=$(best "$out/cells/results.csv" readout)
echo "best cell: state_init $init, readout $readout"

echo "== 3. num_state_tokens 4, 16 for state_init $init, readout $readout"
sweep --name tokens --out "$out/tokens" --epochs "$epochs" --set "learning_rate=$lr" \
      --set "state_init=$init" --set "readout=$readout" --axis num_state_tokens "4 16" --seeds "$token_seeds"
# The cell's own runs (num_state_tokens 8) beside them.
mapfile -t cell < <(awk -F, -v i="$init" -v r="$readout" 'NR == 1 { for (k = 1; k <= NF; k++) col[$k] = k; next }
    $col["state_init"] == i && $col["readout"] == r { print $col["run_dir"] }' "$out/cells/runs.csv")
mkdir -p "$out/tokens-all"
"${TLB_BIN:-./tlb}" report --out "$out/tokens-all" "${cell[@]}" "$out"/tokens/runs/*/
echo "results: $out/lr, $out/cells, $out/tokens-all (results.md, results.png)"
