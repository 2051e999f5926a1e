"""What the fused kernel compiles to for an H100, without a GPU: NVRTC (as CuPy builds it), then
``ptxas -v`` for sm_90: registers per thread, the local-memory stack frame and spills, for each
``__launch_bounds__`` minimum of resident blocks, and the occupancy that register count allows.

``python -m perf.gpu_build [--models grid-10 ...] [--policy-len 1 3] [--min-blocks 1 2 4 8]``
needs NVRTC (``pip install nvidia-cuda-nvrtc-cu12``, in the test extra) and ``ptxas`` (the CUDA
toolkit; ``$PTXAS`` or on the PATH or under /usr/local/cuda*/bin). Writes
``perf/results/gpu-build-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine import InferenceConfig
from engine.kernels import fused
from engine.model.layout import layout_of
from perf.models import model_by_name
from perf.nvrtc import compile_ptx, nvrtc_library
from perf.output import save_results

#: The options CuPy's RawModule compiles the kernel with (the arch aside).
OPTIONS = (*fused.NVRTC_OPTIONS, *fused.CUPY_ADDED_OPTIONS)
#: H100 (sm_90) limits the occupancy figure uses.
REGISTERS_PER_SM = 65536
MAX_THREADS_PER_SM = 2048


def find_ptxas() -> str | None:
    """``$PTXAS``, ``ptxas`` on the PATH, or the newest /usr/local/cuda*/bin/ptxas."""
    for candidate in (os.environ.get("PTXAS"), shutil.which("ptxas"),
                      *sorted(glob.glob("/usr/local/cuda*/bin/ptxas"), reverse=True)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def resources(ptxas: str, ptx: str) -> dict[str, int]:
    """Registers, stack frame and spill bytes of ``fused_step`` from ``ptxas -v``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        done = subprocess.run([ptxas, "-v", "-arch=sm_90", str(src), "-o", str(Path(tmp) / "k")],
                              capture_output=True, text=True, check=True)
    text = done.stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    return {"registers": number(r"Used (\d+) registers"),
            "stack_bytes": number(r"(\d+) bytes stack frame"),
            "spill_store_bytes": number(r"(\d+) bytes spill stores"),
            "spill_load_bytes": number(r"(\d+) bytes spill loads")}


def build_row(model_name: str, policy_len: int, min_blocks: int, library: Any,
              ptxas: str) -> dict[str, Any]:
    model = model_by_name(model_name)
    config = InferenceConfig(policy_len=policy_len)
    layout = layout_of(model, config)
    _, _, offsets = fused.pack_layout(layout)
    source = fused.build_source(layout, np.dtype(layout.dtype), np.dtype(np.float64), offsets,
                                min_blocks)
    rc, log, ptx = compile_ptx(library, source, (*OPTIONS, "-arch=compute_90"))
    if rc != 0:
        raise RuntimeError(f"NVRTC failed for {model_name} L={policy_len}: {log}")
    row: dict[str, Any] = {"model": model_name, "policy_len": policy_len,
                           "min_blocks": min_blocks,
                           "local_bytes_declared": fused.local_bytes(layout, np.dtype(np.float64))}
    row.update(resources(ptxas, ptx))
    regs = max(row["registers"], 1)
    blocks = min(REGISTERS_PER_SM // (regs * fused.BLOCK), MAX_THREADS_PER_SM // fused.BLOCK)
    row["threads_per_sm"] = blocks * fused.BLOCK
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gpu_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["grid-10"])
    parser.add_argument("--policy-len", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--min-blocks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    library, ptxas = nvrtc_library(), find_ptxas()
    if library is None or ptxas is None:
        print("python -m perf.gpu_build: needs NVRTC (pip install nvidia-cuda-nvrtc-cu12) and "
              "ptxas (the CUDA toolkit)", file=sys.stderr)
        return 2
    rows = [build_row(m, length, b, library, ptxas) for m in args.models
            for length in args.policy_len for b in args.min_blocks]
    print(f"fused kernel for sm_90 (NVRTC options {' '.join(OPTIONS)}; {ptxas})")
    for r in rows:
        print(f"  {r['model']} policy_len {r['policy_len']}, launch bound {r['min_blocks']}: "
              f"{r['registers']} registers ({r['threads_per_sm']} threads/SM), stack "
              f"{r['stack_bytes']} B, spills {r['spill_store_bytes']} B stored / "
              f"{r['spill_load_bytes']} B loaded (local arrays declared: "
              f"{r['local_bytes_declared']} B)")
    save_results("gpu-build", {
        "command": "python -m perf.gpu_build " + " ".join(argv if argv is not None
                                                           else sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "ptxas": ptxas, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
