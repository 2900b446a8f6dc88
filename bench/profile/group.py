#!/usr/bin/env python3
"""Where a training micro-batch's time goes, from `perf script -F ip,sym`
output of bench/profile/step_profile under `perf record --call-graph dwarf`
(bench/profile/profile.sh): samples outside model_forward/model_backward
(set-up) are dropped; the rest are split into the GEMM tiles, by caller
(the fused FFN or the dense layers) and kind (row tiles with an epilogue,
plain tiles, spans of a weight gradient), and everything else, by its
innermost named function and the two callers above it. Shares are of the
in-model samples."""
import collections
import sys


def samples(lines):
    cur = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = []
        elif line[0] in " \t":
            parts = line.split()
            cur.append(parts[1] if len(parts) > 1 else "?")
        else:
            cur = []
    if cur:
        yield cur


def main():
    products, other = collections.Counter(), collections.Counter()
    total = 0
    for frames in samples(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin):
        if not any("model_forward" in f or "model_backward" in f for f in frames):
            continue
        total += 1
        way = "backward" if any("model_backward" in f for f in frames) else "forward"
        leaf = frames[0]
        in_tiles = any(f.startswith(("tile", "gemm", "colsum")) for f in frames[:6]) and not any(
            k in leaf for k in ("gelu", "ffn_save", "ffn_gelu"))
        if in_tiles:
            ffn = any(f.startswith("ffn_") for f in frames)
            kind = ("weight-gradient spans" if any(f.startswith(("gemm._omp_fn.1", "gemm_span_share")) for f in frames)
                    else "row tiles + epilogue" if any("gemm_rows" in f or "ffn_forward_rows" in f
                                                       or "ffn_backward_blocks" in f for f in frames)
                    else "tiles")
            products[(way, "ffn" if ffn else "dense", kind)] += 1
        else:
            names = [f.split(".")[0] for f in frames
                     if not f.startswith(("_mm", "GOMP")) and "omp_fn" not in f]
            other[(way, " < ".join(names[:3]))] += 1
    if not total:
        sys.exit("group.py: no samples inside model_forward/model_backward")
    print(f"{total} samples in the model; products (GEMM tiles) {100 * sum(products.values()) / total:.1f}%")
    for k, v in products.most_common():
        print(f"  {100 * v / total:5.1f}%  {k[0]:8} {k[1]:5} {k[2]}")
    print("everything else, by function < caller < caller:")
    for k, v in other.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 30):
        print(f"  {100 * v / total:5.1f}%  {k[0]:8} {k[1]}")


if __name__ == "__main__":
    main()
