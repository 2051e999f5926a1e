#!/usr/bin/env bash
# The GPU checks of issue 8 in one run on a lent device machine (an H100 or H200), about six
# minutes: the CuPy tests (array path and fused kernel against Numba, device populations),
# then `python -m perf.gpu` (both kernels side by side, the fused kernel's launch bounds swept,
# 1,000,000 agents at 30 Hz through the engine). Logs and the JSON land in $OUT.
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
timeout 240 python3 -m pytest -q -x tests/test_gpu_backend.py tests/test_device_populations.py \
    tests/test_fused_kernel.py 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}
timeout 300 python3 -m perf.gpu --agents 100000 1000000 4000000 --kernel array fused \
    --min-blocks 1 2 4 8 --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc bench rc=$bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
