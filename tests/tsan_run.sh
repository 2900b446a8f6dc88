#!/usr/bin/env bash
# make test-tsan's runs (Criterion cannot start under ThreadSanitizer,
# Snaipe/Criterion#274, so these run the TSan-built tlb itself): sharded
# training on 2 threads (both wirings; the automatic backends, then ref, then
# mixed precision; two micro-batches per step, evaluation, checkpoints, the
# loader thread), one-sample micro-batches of long chunks on ref (the ops'
# own threads) and the golden checks (sharded forward and backward). Any
# report fails the run.
set -euo pipefail
tlb=$1
dir=$(mktemp -d /tmp/tlb_tsan_XXXXXX)
trap 'rm -rf "$dir"' EXIT
cfg=$dir/tiny.cfg
cat > "$cfg" <<CFG
image_size: 16
patch_size: 4
embed_dim: 16
chunk_size: 4
r: 2
num_layers: 1
num_heads: 2
ffn_drop: 0.1
attn_drop: 0.1
learning_rate: 0.003
eval_limit: 64
batch_size: 32
micro_batch: 16
train_limit: 128
epochs: 2
threads: 2
name: tsan
out_dir: $dir/runs
CFG
"$tlb" train "$cfg" > "$dir/out.txt"
"$tlb" train "$cfg" --set wiring=paper --set backend=ref > "$dir/out.txt"
# mixed precision where the CPU has AVX512_BF16 (its FFN stage's passes split
# columns between the threads); elsewhere the same run in fp32
TLB_BF16=always "$tlb" train "$cfg" --set name=tsan-bf16 > "$dir/out.txt"
# one sample a micro-batch (one shard, so the ops run on both threads) and
# chunks of 324 patches, on ref: TSan instruments scalar accesses but not
# the 32- and 64-byte vector loads and stores of the SIMD kernels (removing
# ffn_backward_blocks' barrier went unreported), whose own threads the
# 1- vs 3-thread bit-equality tests check instead (tests/test_ops_fused.c)
"$tlb" train "$cfg" --set name=tsan-ops-threads --set backend=ref --set image_size=18 --set patch_size=1 \
    --set chunk_size=324 --set num_state_tokens=4 --set batch_size=2 --set micro_batch=1 --set train_limit=4 \
    --set eval_limit=4 --set epochs=1 > "$dir/out.txt"
OMP_NUM_THREADS=2 "$tlb" check tests/data/tiny_keras.safetensors tests/data/tiny_paper.safetensors > "$dir/out.txt"
echo "test-tsan: no ThreadSanitizer reports"
