#!/usr/bin/env bash
# The GPU checks of issue 8 in one run on a lent device machine (an H100 or H200), at most 9.5
# minutes: the CuPy tests (array path and fused kernel against Numba, device populations),
# then `python -m perf.gpu` twice: the fused kernel's launch bounds and tree walks swept at
# 1,000,000 agents, then both kernels side by side at their defaults with 1,000,000 agents at
# 30 Hz through the engine. Logs and the JSON land in $OUT.
#
# The device machine has CuPy, NumPy, Numba and pytest but no network; carry the rest as
# wheels. Once, here, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     posix-ipc orjson mcap zstandard lz4 inferactively-pymdp==0.0.7.1
# then through the device tool: run(command="bash perf/gpu_device.sh", carry=[".whl"],
# timeout_s=600).
set -uo pipefail
OUT=${OUT:-/tmp/agentloop-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import cupy, numba, numpy; print(cupy.__version__, numba.__version__, numpy.__version__)" \
    | tee -a "$OUT/device.txt"
timeout 200 python3 -m pytest -q -x tests/engine/kernels/test_array_step.py tests/engine/runtime/test_device_populations.py \
    tests/engine/kernels/test_fused_kernel.py 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}
# the fused kernel's variants side by side at 1,000,000 agents (few ticks each) ...
timeout 120 python3 -m perf.gpu --quick --agents 1000000 --engine-agents 100000 --kernel fused \
    --min-blocks 1 4 8 --fused-tree sparse generic --json "$OUT/gpu-sweep.json" 2>&1 \
    | tee "$OUT/sweep.log"
sweep_rc=${PIPESTATUS[0]}
# ... then the figures: both kernels at their defaults, 1,000,000 agents at 30 Hz
timeout 240 python3 -m perf.gpu --agents 100000 1000000 4000000 --kernel array fused \
    --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc sweep rc=$sweep_rc bench rc=$bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$sweep_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
