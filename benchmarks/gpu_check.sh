#!/usr/bin/env bash
# The whole GPU check, in a few minutes on one GPU: the CUDA tests, then the throughput benchmark
# of imagenet-d16 at 256 x 256 (fp32, bf16, fp16, bf16 compiled; batch 1, 8 and 32) and the fast
# path's quality on photos, on the GPU. Prints everything; the README keeps the figures.
#
#   bash benchmarks/gpu_check.sh              # after scripts/setup.sh --test
#   WETOK_PYTHON=python bash benchmarks/gpu_check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${WETOK_PYTHON:-$root/.venv/bin/python}"
cd "$root"
export HF_HUB_OFFLINE=1
"$python" -c "import torch, sys; torch.cuda.is_available() or sys.exit('gpu_check: no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -m pytest -q tests/test_cuda.py
"$python" benchmarks/throughput.py --device cuda --models imagenet-d16 --sizes 256 --batches 1,8,32 \
    --variants fp32,bf16,fp16,bf16+compile --warmup 2 --repeats 5
"$python" benchmarks/throughput.py --device cuda --models imagenet-d16 --sizes 512 --batches 8 \
    --variants fp32,bf16 --warmup 1 --repeats 3
"$python" benchmarks/throughput.py --device cuda --quality-only --variants bf16,fp16
