#!/usr/bin/env bash
# One prepared GPU run: benchmarks/gpu_numbers.py (UNetASPP training images/s model-alone, with
# torch.compile, and in dermseg's own loop fed from the prepared cache; predict images/s), bf16
# autocast + channels_last, random-init encoders as no weight hub is reachable there.
# Usage on the GPU machine, from the repository root: bash benchmarks/gpu_compare.sh OUTDIR
# (wheels of packages missing there, e.g. albumentations, travel in .whl/ and are installed first).
set -euo pipefail
out=${1:-/tmp/gpu_out}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks
else
  export PYTHONPATH=$PWD/src:$PWD/benchmarks
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 benchmarks/gpu_numbers.py --out "$out" "${@:2}" 2>&1 | tee "$out/gpu_numbers.log"
