#!/usr/bin/env bash
# GPU checks of minift's kernels. Run from the repository root on a machine with an
# NVIDIA GPU and CuPy:   OUT=/some/dir bash kernels/check_on_device.sh
# Writes nvidia_smi.log, gpu_tests.log (pytest -m gpu), bench_kernels.log and the GPT
# training step on GPU and CPU (bench_step_gpu.log, bench_step_cpu.log) into $OUT;
# exits non-zero when a step failed (both steps run either way).
set -uo pipefail
OUT="${OUT:-/tmp/minift_gpu_check}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p "$OUT"
export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0   # cuBLAS in full float32 for the comparisons

nvidia-smi 2>&1 | tee "$OUT/nvidia_smi.log" || exit 1
status=0
PYTHONPATH=. "$PY" -m pytest -m gpu -q 2>&1 | tee "$OUT/gpu_tests.log" || status=1
PYTHONPATH=. "$PY" -m minift.bench_kernels 2>&1 \
    | tee "$OUT/bench_kernels.log" || status=1
PYTHONPATH=. "$PY" -m minift.bench step --device cuda 2>&1 | tee "$OUT/bench_step_gpu.log" || status=1
PYTHONPATH=. "$PY" -m minift.bench step --device cpu 2>&1 | tee "$OUT/bench_step_cpu.log" || status=1
exit $status
