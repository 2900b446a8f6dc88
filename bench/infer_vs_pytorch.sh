#!/bin/bash
# Issue 15's comparison on this machine, in one run: the seed model's
# forward at batch 256 on 2 threads in PyTorch 1.13 (Debian's python3-torch,
# checked against the golden logits first) and in tlb-c (tlb_bench --only
# infer), alternated ROUNDS times so that a slow spell of a shared machine
# hits both (this kind of machine is shared: the same binary varies by 20%
# between processes); prints each round and the medians, and their ratio.
#
#   bench/infer_vs_pytorch.sh [ROUNDS]        (make bench-pytorch)
#
# Needs python3-torch and an optimized BLAS (Debian's reference BLAS makes
# PyTorch ~14x slower): apt-get install python3-torch libopenblas0-openmp
#
# The fair baseline (issue 22): the PyTorch process alone runs without the
# inherited OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, and bench/pytorch_blas.py
# pins OpenBLAS's threads (as many as torch's with the OpenMP build, 1 with
# the pthread one), sets the core type from the ISA if OpenBLAS does not know
# the CPU, and prints which BLAS, core and threads PyTorch used; each PyTorch
# row carries its CPU use (user + sys over wall: 2.0 = both cores busy).
# bench/train_vs_pytorch.sh does the same for the training step.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
golden=../shared/golden/seed_keras.safetensors
[ -f "$golden" ] || golden=tests/data/seed_keras.safetensors
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "infer_vs_pytorch.sh: no PyTorch for /usr/bin/python3: apt-get install python3-torch libopenblas0-openmp" >&2
    exit 2
fi
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
[ -x build/tlb_bench ] || make -s build/tlb_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bf16cpu=0; grep -qw avx512_bf16 /proc/cpuinfo && bf16cpu=1
for i in $(seq "$rounds"); do
    # bf16 autocast has no native support without AVX512_BF16 (~30 img/s there): once is enough
    prec=fp32,bf16; [ "$bf16cpu" = 0 ] && [ "$i" != 1 ] && prec=fp32
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/pytorch_infer.py --golden "$golden" \
        --seconds 3 --precisions $prec 2>"$out/py$i.err" | tail -n +2 >>"$out/py.csv" || { cat "$out/py$i.err" >&2; exit 1; }
    build/tlb_bench --only infer --seconds 3 --out "$out/b$i" >"$out/b$i.txt" 2>&1
    grep -E '^fp32|^mixed' "$out/b$i.txt" | sed "s/^/round $i tlb-c: /"
    tail -n "$(echo $prec | tr ',' '\n' | grep -c .)" "$out/py.csv" | sed "s/^/round $i /"
done
echo "(PyTorch rows: configuration,batch,threads,batch_seconds,images_per_second,cpu_cores)"
grep '^#' "$out/py1.err" || true
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
py32=$(grep '^pytorch fp32,' "$out/py.csv" | cut -d, -f5 | median)
pybf=$(grep '^pytorch bf16' "$out/py.csv" | cut -d, -f5 | median)
echo
echo "medians over $rounds rounds (images/s, batch 256, 2 threads):"
cpu32=$(grep '^pytorch fp32,' "$out/py.csv" | cut -d, -f6 | median)
cpubf=$(grep '^pytorch bf16' "$out/py.csv" | cut -d, -f6 | median)
echo "  PyTorch fp32              $py32   (CPU use $cpu32 cores)"
echo "  PyTorch bf16 autocast     $pybf   (CPU use $cpubf cores)"
for row in "fp32 training plan" "fp32 tile 64"; do
    v=$(cat "$out"/b*/infer.csv | grep "^$row," | cut -d, -f5 | median)
    printf '  tlb-c %-20s %s   (%.2fx PyTorch fp32)\n' "$row" "$v" "$(awk -v a="$v" -v b="$py32" 'BEGIN {print a / b}')"
done
if grep -q '^mixed (bf16 dense) tile 64,' "$out"/b1/infer.csv 2>/dev/null; then
    v=$(cat "$out"/b*/infer.csv | grep '^mixed (bf16 dense) tile 64,' | cut -d, -f5 | median)
    printf '  tlb-c mixed, tile 64       %s   (%.2fx PyTorch bf16 autocast)\n' "$v" "$(awk -v a="$v" -v b="$pybf" 'BEGIN {print a / b}')"
else
    echo "  tlb-c mixed precision      not run here (no AVX512_BF16)"
fi
