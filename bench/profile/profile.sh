#!/bin/bash
# Where the training step's time goes, by op and product kind (BENCHMARKS.md,
# "Session 15"): perf samples with call graphs of bench/profile/step_profile
# (the seed's micro-batch, forward + backward), grouped by group.py.
#
#   bench/profile/profile.sh [MICRO_BATCH [REPEATS [BF16]]]     (410 6 0; make bench-profile)
#
# BF16=1: mixed precision as the trainer runs it (h saved in bf16), 2: with
# h in fp32 (step_profile.c). oneDNN's JIT products carry no symbols: their
# samples do not unwind into the model and are left out of the shares.
#
# Needs perf (linux-perf). Development only: not part of make test or make
# bench. Nothing else should run meanwhile; the printed times run 1.3-1.5x
# slow under perf's call-graph sampling (it copies 16 KB of stack a sample),
# so only the shares mean anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/profile
mkdir -p "$out"
make -s build/libtlb.a
libs=$(make -s -f Makefile print-ldlibs)
# shellcheck disable=SC2086
cc -std=c11 -O2 -g -D_GNU_SOURCE -Isrc -fopenmp -o "$out/step_profile" bench/profile/step_profile.c build/libtlb.a $libs
OMP_NUM_THREADS=${THREADS:-2} perf record -q -F 999 --call-graph dwarf,16384 -o "$out/perf.data" \
    "$out/step_profile" "${1:-410}" "${2:-6}" "${3:-0}"
perf script -i "$out/perf.data" -F ip,sym 2>/dev/null > "$out/perf.txt"
python3 bench/profile/group.py "$out/perf.txt"
