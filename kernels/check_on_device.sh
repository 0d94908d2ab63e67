#!/usr/bin/env bash
# The GPU check of minift: one prepared script for a 10-minute window on a lent GPU.
#
#     bash kernels/check_on_device.sh        (from any folder; OUT=/some/dir for the logs)
#
# It works in the repository root (found from this file's folder), with the checkout's
# minift first on PYTHONPATH, and writes one log per part into $OUT (default
# /tmp/minift_gpu_check). Each part has a time limit, all of them together at most
# MINIFT_CHECK_SECONDS (default 540); a failing part does not stop the next, and the
# exit status is 1 when any part failed (a skipped part is no failure):
#
#   environment.log          GPU, driver, CUDA, NVRTC, CuPy, NumPy, compute-sanitizer versions,
#                            the GPU's figures and the tiles minift picks for it
#   gpu_tests.log            pytest over the GPU test files only (GPU_TESTS below)
#   bench_kernels.log        python -m minift.bench_kernels: SGEMM against cuBLAS, attention
#   bench_step_gpu.log       python -m minift.bench step --device cuda: the GPT training step
#   bench_step_cpu.log       the same step on the CPU, for comparison
#   sanitizer_launches.log   python tests/device_check.py launches: every kernel once, against NumPy
#   repeat.log               python tests/device_check.py repeat: forward, backward and matmul
#                            three times, compared bit for bit
#   sanitizer_<tool>.log     the launches under compute-sanitizer --tool racecheck, synccheck,
#                            memcheck and initcheck (where compute-sanitizer is found)
#   summary.log              one line per part: ok, FAILED (exit code) or skipped, and seconds
#
# Without a GPU (CuPy missing or seeing none, or MINIFT_CHECK_MODE=emulator) the CPU
# emulator of tests/cuda_emulator stands in for CuPy where it can: the kernel test files
# at small sizes, the launches and the repeat; the other GPU parts write that they were
# skipped. A GPU that nvidia-smi lists but CuPy cannot use is a failure, not a reason
# to emulate.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
OUT="${OUT:-/tmp/minift_gpu_check}"
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 1
PY="${PYTHON:-$(command -v python3 || command -v python)}"
BUDGET="${MINIFT_CHECK_SECONDS:-540}"
GPU_TESTS=(tests/test_kernels_gpu.py tests/test_kernels_device_limits.py tests/test_gpu_model.py)
SANITIZER_TOOLS=(racecheck synccheck memcheck initcheck)

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0   # cuBLAS in full float32 for the comparisons
LOGS=(environment gpu_tests bench_kernels bench_step_gpu bench_step_cpu sanitizer_launches repeat
      "${SANITIZER_TOOLS[@]/#/sanitizer_}" summary)
(cd "$OUT" && rm -f "${LOGS[@]/%/.log}")
status=0
started=$SECONDS

# part NAME LIMIT COMMAND...: runs COMMAND with its output in $OUT/NAME.log, for at most
# LIMIT seconds (less when the budget is nearly spent), and records how it went.
part() {
    local name=$1 limit=$2 log="$OUT/$1.log" left t0 rc
    shift 2
    left=$((BUDGET - (SECONDS - started)))
    if ((left < 10)); then
        skip "$name" "out of time (MINIFT_CHECK_SECONDS=$BUDGET spent)"
        status=1
        return
    fi
    ((limit > left)) && limit=$left
    t0=$SECONDS
    { echo "\$ $*"; echo; } >"$log"
    if declare -F "$1" >/dev/null; then   # a function of this script: timeout needs a program
        timeout --kill-after=10 "$limit" bash -c "$(declare -p $SHARED); $(declare -f "$1"); $*" >>"$log" 2>&1
    else
        timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    fi
    rc=$?
    if ((rc == 0)); then
        report "$name" "ok" "$((SECONDS - t0)) s"
    else
        ((rc == 124 || rc == 137)) && echo "(stopped after its limit of $limit s)" >>"$log"
        report "$name" "FAILED (exit $rc)" "$((SECONDS - t0)) s"
        echo "---- the end of $name.log:"
        tail -n 40 "$log"
        echo "----"
        status=1
    fi
}

skip() {   # skip NAME WHY
    echo "skipped: $2" >"$OUT/$1.log"
    report "$1" "skipped" "$2"
}

report() {
    printf '%-22s %-18s %s\n' "$1" "$2" "$3" | tee -a "$OUT/summary.log"
}

# ------------------------------------------------------------------ GPU or emulator
gpu_listed=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
MODE="${MINIFT_CHECK_MODE:-}"
if [[ -z "$MODE" ]]; then
    if "$PY" -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)" >/dev/null 2>&1; then
        MODE=gpu
    else
        MODE=emulator
    fi
fi
EMU=()          # the environment a command runs in on the emulator
SMALL=()
if [[ $MODE == emulator ]]; then
    EMU_BUILD=$(mktemp -d)
    trap 'rm -rf "$EMU_BUILD"' EXIT
    EMU=(env "PYTHONPATH=$ROOT/tests/cuda_emulator:$PYTHONPATH" MINIFT_KERNEL_TEST_SIZES=small
         "MINIFT_CUDA_EMU_BUILD_DIR=$EMU_BUILD")
    SMALL=(--small)
fi
SANITIZER=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer \
            /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer \
            2>/dev/null | head -n 1)
SHARED="MODE ROOT OUT PY SANITIZER gpu_listed EMU SMALL GPU_TESTS"   # what the functions below read
echo "minift GPU check: mode $MODE, logs in $OUT" | tee "$OUT/summary.log"

# ------------------------------------------------------------------ 1. environment
environment() {
    echo "mode: $MODE (MINIFT_CHECK_MODE=${MINIFT_CHECK_MODE:-unset}); $gpu_listed GPU(s) listed by nvidia-smi"
    echo "date: $(date -u +%FT%TZ); host: $(uname -srm)"
    echo "repository: $ROOT at $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)')," \
         "$(git status --porcelain 2>/dev/null | wc -l) paths changed"
    echo "python: $PY"
    echo
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
        nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    echo
    command -v nvcc >/dev/null && nvcc --version | tail -n 2 || echo "nvcc: not found"
    [[ -n "$SANITIZER" ]] && "$SANITIZER" --version | head -n 3 || echo "compute-sanitizer: not found"
    [[ $MODE == emulator ]] && g++ --version | head -n 1
    echo
    "${EMU[@]}" "$PY" tests/device_check.py environment || return 1
    if [[ $MODE == emulator && $gpu_listed -gt 0 ]]; then
        echo "nvidia-smi lists a GPU, but CuPy cannot use it: see above"
        return 1
    fi
}
part environment 60 environment

# ------------------------------------------------------------------ 2. the GPU test files
gpu_tests() {   # only these files: the others import hypothesis, transformers, ... first
    "${EMU[@]}" "$PY" -m pytest -q -rs -p no:cacheprovider --noconftest "${GPU_TESTS[@]}" || return
    # On a GPU a file skipped whole (no CuPy, no device) is a failure, not a pass.
    if [[ $MODE == gpu ]] && grep "SKIPPED .* tests skipped: " "$OUT/gpu_tests.log"; then
        return 1
    fi
}
if [[ $MODE == emulator ]] && ! command -v g++ >/dev/null; then
    skip gpu_tests "no GPU, and the emulator needs g++"
else
    part gpu_tests 240 gpu_tests
fi

# ------------------------------------------------------------------ 3. benchmarks, training step
if [[ $MODE == gpu ]]; then
    part bench_kernels 120 "$PY" -m minift.bench_kernels
    part bench_step_gpu 90 "$PY" -m minift.bench step --device cuda
else
    skip bench_kernels "timings need a GPU"
    skip bench_step_gpu "the training step needs a GPU (the emulator runs the kernels, not CuPy's NumPy API)"
fi
part bench_step_cpu 60 "$PY" -m minift.bench step --device cpu

# ------------------------------------------------------------------ 4. launches, repeat, sanitizer
part sanitizer_launches 60 "${EMU[@]}" "$PY" tests/device_check.py launches "${SMALL[@]}"
part repeat 60 "${EMU[@]}" "$PY" tests/device_check.py repeat "${SMALL[@]}"
for tool in "${SANITIZER_TOOLS[@]}"; do
    if [[ $MODE != gpu ]]; then
        skip "sanitizer_$tool" "compute-sanitizer needs a GPU"
    elif [[ -z "$SANITIZER" ]]; then
        skip "sanitizer_$tool" "compute-sanitizer not found"
    else
        part "sanitizer_$tool" 60 "$SANITIZER" --tool "$tool" --error-exitcode 3 --print-limit 20 \
            "$PY" tests/device_check.py launches
    fi
done

echo "exit $status after $((SECONDS - started)) s" | tee -a "$OUT/summary.log"
exit $status
