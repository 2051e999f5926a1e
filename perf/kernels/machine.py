"""The machine's limits measured in the same run: float64 matmul GFLOP/s and copy GB/s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import numba
import numpy as np
from numba import njit, prange

_MATMUL_CODE = """
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.random((n, n))
b = rng.random((n, n))
a @ b
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""

_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def measure_matmul(n: int, threads: int, repeats: int) -> dict[str, Any]:
    """float64 ``n x n @ n x n`` GFLOP/s with BLAS limited to ``threads`` threads.

    Runs in a child process whose BLAS thread count is set by environment variables (works
    without threadpoolctl, and leaves this process's BLAS pool alone).
    """
    env = dict(os.environ)
    for var in _BLAS_THREAD_VARS:
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _MATMUL_CODE, str(n), str(repeats)], env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    times = json.loads(out.stdout.strip().splitlines()[-1])
    gflops = [2.0 * n ** 3 / t / 1e9 for t in times]
    return {"n": n, "threads": threads, "repeats": repeats,
            "gflops_median": float(np.median(gflops)), "gflops_max": float(max(gflops)),
            "gflops_min": float(min(gflops))}


@njit(parallel=True, cache=True)
def _parallel_copy(src, dst):  # noqa: ANN001
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def measure_bandwidth(mb: int, threads: int, repeats: int) -> dict[str, Any]:
    """Copy GB/s (bytes read + bytes written, STREAM's convention) of a ``mb`` MiB float64 array.

    Copies with a Numba ``prange`` loop on ``threads`` threads (the kernels' threading), and
    with ``np.copyto`` (one thread) for reference.
    """
    n = mb * 1024 * 1024 // 8
    src = np.ones(n)
    dst = np.zeros(n)
    moved = 2.0 * src.nbytes
    numba.set_num_threads(threads)
    try:
        _parallel_copy(src, dst)
        par = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _parallel_copy(src, dst)
            par.append(moved / (time.perf_counter() - t0) / 1e9)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.copyto(dst, src)
    npy = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        npy.append(moved / (time.perf_counter() - t0) / 1e9)
    return {"mib": mb, "threads": threads, "repeats": repeats,
            "gbps_median": float(np.median(par)), "gbps_max": float(max(par)),
            "numpy_copy_gbps_max": float(max(npy))}


