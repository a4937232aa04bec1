#!/usr/bin/env bash
# One prepared GPU run of benchmarks/compare_models.py (UNetASPP vs smp Unet, same encoder,
# bf16 AMP + channels_last, random-init encoders as no hub is reachable there).
# Usage on the GPU machine, from the repository root: bash benchmarks/gpu_compare.sh OUTDIR
set -euo pipefail
out=${1:-/tmp/gpu_out}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$out/gpu.txt"
common=(--device cuda --weights none --size 512 --batch 16 --steps 20 --n-train 480 --image-size 640 --workers 12 --work /tmp/bench)
python3 benchmarks/compare_models.py "${common[@]}" --encoder inception_v3 --minutes 1.5 2>&1 | tee "$out/inception.log"
python3 benchmarks/compare_models.py "${common[@]}" --encoder resnet101 --minutes 1.0 2>&1 | tee "$out/resnet101.log"
cp BENCHMARKS.md benchmarks/results/*.json "$out/"
