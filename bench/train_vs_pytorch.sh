#!/bin/bash
# Issue 22's training comparison on this machine, in one run: one training
# step of the seed model (batch 2048 in micro-batches of the trainer's size,
# dropout 0.2, AdamW) in tlb-c (`tlb_bench --only step --step-configs
# auto,bf16-h16`: fp32 automatic and mixed precision as the trainer runs it,
# h saved in bf16) and in PyTorch 1.13
# (bench/pytorch_train.py: Debian's python3-torch, its loss and gradients
# checked against the golden file first; fp32 and bf16 autocast), alternated
# ROUNDS times so that a slow spell of a shared machine hits both; prints
# each round, the medians, their ratios and each one's share of the probe's
# peak of its precision (round 1 runs the probe).
#
#   bench/train_vs_pytorch.sh [ROUNDS [STEPS]]     (make bench-pytorch runs it after the inference one)
#
# ROUNDS default 3, STEPS (timed steps per configuration and round, after a
# warm-up) default 3; THREADS=N (default 2) for both; PYTORCH_BF16=1 runs
# PyTorch's bf16 autocast (once) on a CPU without AVX512_BF16 too; BATCH=N (default 2048,
# a smaller one only to try the script out). On this kind of 2-core VM a
# round takes a few minutes (PyTorch's step is the long part).
#
# The fair baseline (issue 22): the PyTorch process alone runs without the
# inherited OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, and bench/pytorch_blas.py
# pins OpenBLAS's threads and prints which BLAS, core and threads PyTorch used;
# each PyTorch row carries its CPU use (user + sys over wall: 2.0 = both cores
# busy). Needs python3-torch and OpenBLAS: apt-get install python3-torch
# libopenblas0-openmp (python3-threadpoolctl for its view of the thread pools).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
steps=${2:-3}
threads=${THREADS:-2}
batch=${BATCH:-2048}
golden=../shared/golden/seed_keras.safetensors
[ -f "$golden" ] || golden=tests/data/seed_keras.safetensors
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "train_vs_pytorch.sh: no PyTorch for /usr/bin/python3: apt-get install python3-torch libopenblas0-openmp" >&2
    exit 2
fi
bf16cpu=0; grep -qw avx512_bf16 /proc/cpuinfo && bf16cpu=1
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $threads threads," \
     "AVX512_BF16: $([ $bf16cpu = 1 ] && echo yes || echo no), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
[ -x build/tlb_bench ] || make -s build/tlb_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$rounds"); do
    only=step; [ "$i" = 1 ] && only=probe,step
    OMP_NUM_THREADS=$threads build/tlb_bench --only $only --bw-mib 256 --step-configs auto,bf16-h16 --steps "$steps" --batch "$batch" \
        --out "$out/b$i" >"$out/b$i.txt" 2>&1 || { cat "$out/b$i.txt" >&2; exit 1; }
    # step.csv quotes its labels (they hold commas): read it as CSV
    mb=$(/usr/bin/python3 -c 'import csv, sys; print(list(csv.reader(open(sys.argv[1])))[1][3])' "$out/b$i/step.csv")
    /usr/bin/python3 -c 'import csv, sys
for r in list(csv.reader(open(sys.argv[1])))[1:]:
    print("round %s tlb-c %-24s %8.1f img/s  (%s, step %s s)" % (sys.argv[2], r[0], float(r[5]), r[8], r[4]))' \
        "$out/b$i/step.csv" "$i"
    # bf16 autocast without AVX512_BF16 has no native bf16: on the AMD EPYC
    # Zen 3 (session 18) one step took 350 s (5.8 img/s, 12x slower than fp32)
    # and the warm-up and two steps 18 minutes; nobody would train that way,
    # so it runs there only when asked (PYTORCH_BF16=1), and then once.
    prec=fp32,bf16
    if [ "$bf16cpu" = 0 ]; then
        prec=fp32
        [ "${PYTORCH_BF16:-0}" = 1 ] && [ "$i" = 1 ] && prec=fp32,bf16
    fi
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/pytorch_train.py --golden "$golden" \
        --threads "$threads" --steps "$steps" --batch "$batch" --micro-batch "${mb:-293}" --precisions $prec 2>"$out/py$i.err" \
        | tail -n +2 >"$out/py$i.csv" || { cat "$out/py$i.err" >&2; exit 1; }
    awk -F, -v r="$i" '{printf "round %s %-28s %8.1f img/s  (step %s s, CPU use %s cores, peak RSS %s MiB)\n", r, $1, $6, $5, $7, $8}' "$out/py$i.csv"
done
echo
grep '^#' "$out/py1.err" || true
grep -E '^fp32 FMA peak|^bf16 peak' "$out/b1.txt" | sed 's/^/# tlb_bench probe: /'
/usr/bin/python3 - "$out" "$rounds" <<'EOF'
import csv, glob, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(pattern, header=None):
    got = []
    for f in sorted(glob.glob(os.path.join(out, pattern))):
        with open(f) as fh:
            got += list(csv.DictReader(fh, fieldnames=header))
    return got
tlb = rows("b*/step.csv")
py = rows("py*.csv", ["configuration", "batch", "micro_batch", "threads", "step_seconds", "images_per_second",
                      "cpu_cores", "peak_rss_mib"])
peaks = {}
with open(os.path.join(out, "b1", "probe.csv")) as fh:
    for r in csv.DictReader(fh):
        if r["what"].startswith(("fma_peak_", "bf16_peak_")) and not r["what"].endswith("_1_thread") and r["value"]:
            peaks["fp32" if r["what"].startswith("fma") else "bf16"] = float(r["value"])
gf_img = float(tlb[0]["gflop_per_image"]) if tlb else 0
def med(rs, name, key="images_per_second"):
    v = [float(r[key]) for r in rs if r["configuration"] == name]
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
def share(ips, prec):
    p = peaks.get(prec)
    return "%.1f GFLOP/s effective, %.1f%% of the %s peak" % (ips * gf_img, 100 * ips * gf_img / p, prec) if p \
        else "%.1f GFLOP/s effective, %s peak not available" % (ips * gf_img, prec)
print("\nmedians over %d rounds (images/s, training step, batch %s; range, rounds):" %
      (rounds, tlb[0]["batch"] if tlb else "?"))
res = {}
for name, prec in (("pytorch fp32", "fp32"), ("pytorch bf16 autocast", "bf16")):
    m = med(py, name)
    if not m:
        print("  %-30s not run%s" % (name, " (no AVX512_BF16: emulated bf16 ran 5.8 img/s on a Zen 3; PYTORCH_BF16=1 runs it)" if prec == "bf16" else ""))
        continue
    res[name] = m[0]
    cpu = med(py, name, "cpu_cores")[0]
    print("  %-30s %8.1f (%.1f-%.1f, %d)  %s; CPU use %.2f cores" % ((name,) + m + (share(m[0], prec), cpu)))
for name, prec, vs, target in (("automatic", "fp32", "pytorch fp32", None),
                               ("mixed, bf16 h (default)", "bf16", "pytorch bf16 autocast", 4.0)):
    m = med(tlb, name)
    if not m:
        print("  tlb-c %-24s not run here%s" % (name, " (no AVX512_BF16)" if prec == "bf16" else ""))
        continue
    ratio = ""
    if vs in res:
        ratio = "; %.2fx %s" % (m[0] / res[vs], vs)
        if target:
            ratio += " (issue 22 target >= %.0fx: %s)" % (target, "met" if m[0] / res[vs] >= target else "NOT met")
    print("  tlb-c %-24s %8.1f (%.1f-%.1f, %d)  %s%s" % ((name,) + m + (share(m[0], prec), ratio)))
EOF
