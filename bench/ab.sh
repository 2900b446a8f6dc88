#!/bin/bash
# Two builds of tlb-c in one process: the working tree and REF (any commit),
# each built position-independent into its own shared object, their
# micro-batch steps alternated (bench/ab/ab_main.c). For a change's speed on
# a shared machine, where timing one build after the other measures the
# neighbours as much as the change.
#
#   bench/ab.sh REF [ROUNDS [MICRO_BATCH]]      (make bench-ab REF=... ROUNDS=...)
#
# ROUNDS default 15, MICRO_BATCH default 410 (the trainer's fp32 one for batch
# 2048 on this model; in mixed precision the trainer takes 256 on 2 threads:
# pass it for the mixed step as runs see it); THREADS=N (default 2); AB_REF_SPEC / AB_NEW_SPEC an ops spec
# per side, AB_REF_BF16_H / AB_NEW_BF16_H=1 bf16 h per side, AB_REF_MIXED /
# AB_NEW_MIXED=1 mixed precision per side
# (bench/ab/step_entry.c), AB_REF_MB / AB_NEW_MB a side's own micro-batch
# (the ratio is then per image), so REF=HEAD times one setting against
# another; AB_INFER=TILE times inference (the batch in tiles of TILE) in
# place of the training micro-batch.
# Builds under build-ab/ (REF's source in a temporary git worktree there,
# removed at the end). Both build with -O3
# -fPIC and without -Wmaybe-uninitialized (older commits tripped it under
# -fPIC), so the two differ only in their source.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: bench/ab.sh REF [ROUNDS [MICRO_BATCH]]}
rounds=${2:-15}
mb=${3:-410}
out=build-ab
refsrc=$out/ref-src
commit=$(git rev-parse --verify "$ref^{commit}") || { echo "bench/ab.sh: no commit $ref" >&2; exit 2; }
mkdir -p "$out"
rm -rf "$refsrc"
git worktree prune
git worktree add --detach "$refsrc" "$commit" >/dev/null
trap 'git worktree remove --force "$refsrc" 2>/dev/null || true' EXIT
libs=$(make -s -f Makefile print-ldlibs)
build_so() { # source tree, build dir, shared object
    make -s -C "$1" -j"$(nproc)" BUILD="$PWD/$2" OPT="-O3 -fPIC -Wno-maybe-uninitialized" "$PWD/$2/libtlb.a" >/dev/null
    cc -std=c11 -O2 -fPIC -D_GNU_SOURCE -I"$1/src" -c bench/ab/step_entry.c -o "$2/step_entry.o"
    # shellcheck disable=SC2086
    cc -shared -Wl,-Bsymbolic -o "$3" "$2/step_entry.o" -Wl,--whole-archive "$2/libtlb.a" \
        -Wl,--no-whole-archive $libs
}
build_so . "$out/new" "$out/new.so"
build_so "$refsrc" "$out/ref" "$out/ref-$(git rev-parse --short "$commit").so"
cc -std=c11 -O2 -Wall -Wextra -Werror bench/ab/ab_main.c -ldl -o "$out/ab_main"
echo "# bench/ab.sh: $(git rev-parse --short "$commit") vs the working tree ($(git describe --always --dirty)), $rounds rounds, ${THREADS:-2} threads"
OMP_NUM_THREADS=${THREADS:-2} "$out/ab_main" "$rounds" "$mb" "$out/ref-$(git rev-parse --short "$commit").so" "$out/new.so"
