#!/bin/sh
# Layers point down: no file under src/ includes a header of a higher layer.
#   util < ops < model < data < train < cli
# (data and train both sit on model; train may use data, data never train.)
# Usage: tests/layers.sh [ROOT]   checks ROOT/src (default: the repository).
# `make test` runs it, then runs it on a planted violation, which must fail.
set -u
root=${1:-$(dirname "$0")/..}

rank() {
    case $1 in
    util) echo 0 ;; ops) echo 1 ;; model) echo 2 ;; data) echo 3 ;;
    train) echo 4 ;; cli) echo 5 ;; *) echo -1 ;;
    esac
}

bad=0
for f in "$root"/src/*/*.c "$root"/src/*/*.h; do
    [ -f "$f" ] || continue
    layer=$(basename "$(dirname "$f")")
    own=$(rank "$layer")
    if [ "$own" -lt 0 ]; then
        echo "$f: folder '$layer' is not a known layer (add it to tests/layers.sh)"
        bad=1
        continue
    fi
    # every #include "layer/header.h" with its line number
    for hit in $(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_0-9]*/' "$f" |
                 sed 's/^\([0-9]*\):.*"\([a-z_0-9]*\)\/.*/\1:\2/'); do
        line=${hit%%:*}
        dep=${hit#*:}
        r=$(rank "$dep")
        if [ "$r" -lt 0 ] || [ "$r" -gt "$own" ]; then
            echo "$f:$line: $layer includes a header of $dep, a higher or unknown layer"
            bad=1
        fi
    done
done
exit $bad
