#!/bin/bash
# The oneDNN products of a training micro-batch timed in place
# (bench/profile/products.c): step_profile's forward and backward with every
# tlb_dnnl_dense_product call wrapped by the linker.
#
#   bench/profile/products.sh [MICRO_BATCH [REPEATS [BF16]]]     (410 6 1; the trainer's mixed
#   micro-batch on 2 threads is 256 since session 19: pass it for the products as runs see them)
#
# BF16=1 (the default) runs mixed precision as the trainer does (h saved in
# bf16; 2: h in fp32), where the forward and input-gradient products are
# oneDNN's and the weight gradients ours (dense_bf16_dw); THREADS=N (default 2) shards the micro-batch as the trainer does;
# PRODUCTS_AGAIN=1 also times each call repeated at once (products.c).
# Development only; nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/profile
mkdir -p "$out"
make -s build/libtlb.a
libs=$(make -s -f Makefile print-ldlibs)
# shellcheck disable=SC2086
cc -std=c11 -O2 -g -D_GNU_SOURCE -Isrc -fopenmp -Wl,--wrap=tlb_dnnl_dense_product,--wrap=dense_bf16_dw -o "$out/step_products" \
    bench/profile/step_profile.c bench/profile/products.c build/libtlb.a $libs
OMP_NUM_THREADS=${THREADS:-2} "$out/step_products" "${1:-410}" "${2:-6}" "${3:-1}"
