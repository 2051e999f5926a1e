"""Cold compile of a first step: ``python -m perf.compile_time MODEL ... [--dtype float32]``.

Each model runs in a fresh Python process with an empty Numba cache directory: the seconds
from building ``Agents(model, 2)`` to the end of its first step (which compiles the step the
model's walk needs, and the stages it calls), and the process's import time. The models run one
after the other, so that the figures are not shared CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = """
import json, sys, time
t0 = time.monotonic()
import numpy as np
from engine import Agents, InferenceConfig
from engine.kernels.numba.step import walk_of
from perf.models import model_by_name
t1 = time.monotonic()
model = model_by_name(sys.argv[1])
agents = Agents(model, 2, InferenceConfig(dtype=sys.argv[2]))
agents.step(np.zeros((2, len(model.num_obs)), dtype=np.int64))
t2 = time.monotonic()
print(json.dumps({"model": sys.argv[1], "walk": int(walk_of(agents._km)),
                  "import_s": round(t1 - t0, 1), "first_step_s": round(t2 - t1, 1)}))
"""


def measure(model: str, dtype: str) -> dict:
    """One model's cold first step, in a child process with an empty Numba cache."""
    with tempfile.TemporaryDirectory(prefix="agentloop-numba-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", _CHILD, model, dtype], env=env,
                             check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.compile_time", description=__doc__)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    for model in args.models:
        row = measure(model, args.dtype)
        print(f"{row['model']:16s} walk {row['walk']}  import {row['import_s']:5.1f} s  "
              f"cold first step {row['first_step_s']:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
