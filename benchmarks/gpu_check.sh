#!/usr/bin/env bash
# The GPU checks, for a machine with CUDA (under 5 minutes on one GPU):
#   tests/gpu (the layer against the CPU, bf16-mixed training on one device and DDP on two,
#   a tiny study, the benches), then `harness bench` on the GPU (layer and whole model).
# Usage: benchmarks/gpu_check.sh [OUTPUT_DIR]   (default: gpu-check/); needs the package and
# its test extras installed in the active Python, with a CUDA build of torch.
set -euo pipefail
out="${1:-gpu-check}"
mkdir -p "$out"
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -m pytest -q tests/gpu -p no:cacheprovider 2>&1 | tee "$out/tests.txt"
python -m harness bench --device cuda --widths 512 1024 --repeats 10 | tee "$out/bench.txt"
python -m harness bench --device cuda --model --repeats 10 | tee "$out/bench-model.txt"
python -m harness bench --device cuda --attention --contexts 1024 4096 --repeats 5 \
  | tee "$out/bench-attention.txt"
