"""The fused step kernel (``fused_step.cu``): one CUDA thread per agent, one launch per chunk,
every intermediate in the thread's local arrays. Built for the GPU by CuPy (NVRTC) or for the
host by the C++ compiler (the build CI tests), one build per (model, config), cached.

Design notes: ``docs/architecture.md``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.kernels.numba.step import kernel_model
from engine.model.config import InferenceConfig
from engine.model.constants import EPS, EXP_M16, TIE_TOL
from engine.model.layout import ModelLayout

#: The kernel's CUDA C source, shipped beside this module.
SOURCE_PATH = Path(__file__).with_name("fused_step.cu")

#: Layout arrays the kernel reads, packed into one int64 buffer (booleans as 0/1) ...
INT_FIELDS = ("num_states", "num_controls", "state_offset", "joint_stride", "A_offset",
              "A_cols", "jidx", "jidx_identity", "B_offset", "B_sparse", "B_det", "Bd_row",
              "Bs_rowptr", "Bs_col", "Bc_colptr", "Bc_row", "po_ptr", "po_idx", "node_depth",
              "node_action", "leaf_of_policy", "first_action")
#: ... and one float64 buffer.
FLOAT_FIELDS = ("A_flat", "Bt_flat", "Bd_val", "Bs_val", "D_flat", "utility", "utility_B",
                "ambiguity", "po_val", "lnE")

#: Largest local (per-thread) arrays a build may need, in bytes: beyond it the model is too
#: large for one thread per agent and the array path (``kernel="array"``) is the one to use.
LOCAL_BYTES_LIMIT = 128 * 1024
#: Threads per block of a launch.
BLOCK = 128
#: Resident blocks per multiprocessor a launch aims for (the grid-stride loop does the rest).
BLOCKS_PER_SM = 16
#: ``__launch_bounds__`` minimum of resident blocks per multiprocessor: caps the registers per
#: thread at 65536 / (BLOCK x this), trading spills for occupancy (``python -m perf.gpu
#: --min-blocks`` sweeps it on a GPU).
MIN_BLOCKS = 4
#: Whether one-factor models with sparse B take the Numba step's sparse tree walk (only the
#: states that can pass e^-16) rather than the generic one (``python -m perf.gpu --fused-tree``
#: compares).
SPARSE_TREE = True

#: NVRTC options of the GPU build: IEEE rounding as on the CPU (no fused multiply-adds).
NVRTC_OPTIONS = ("--std=c++14", "--fmad=false")
#: What CuPy's RawModule adds to them (CuPy 14's ``cupy/cuda/compiler.py``), besides the arch:
#: the NVRTC tests compile with these too.
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

_FLAG_UTILITY, _FLAG_INFO_GAIN, _FLAG_STOCHASTIC, _FLAG_FULL_SAMPLING = 1, 2, 4, 8
_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def pack_layout(layout: ModelLayout) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The layout's arrays as one int64 and one float64 buffer, and each array's offset (the
    arrays by the names the Numba kernels take them under,
    :func:`engine.kernels.numba.step.kernel_model`)."""
    arrays = kernel_model(layout)._asdict()
    offsets: dict[str, int] = {}
    ints, floats = [], []
    at = 0
    for name in INT_FIELDS:
        a = np.ascontiguousarray(arrays[name], dtype=np.int64).ravel()
        offsets[name], at = at, at + a.size
        ints.append(a)
    at = 0
    for name in FLOAT_FIELDS:
        a = np.ascontiguousarray(arrays[name], dtype=np.float64).ravel()
        offsets[name], at = at, at + a.size
        floats.append(a)
    return np.concatenate(ints), np.concatenate(floats), offsets


def kernel_sizes(layout: ModelLayout) -> dict[str, int]:
    """The compile-time sizes of a build (the names the CUDA source uses)."""
    max_u = int(layout.B_det.shape[1])
    n_pol = layout.n_policies
    return {"NF": layout.n_factors, "NM": layout.n_modalities, "NJ": layout.n_joint,
            "STOT": layout.state_size, "NJO": layout.n_joint_obs, "NNODES": layout.tree.n_nodes,
            "NPOL": n_pol, "HORIZON": layout.policy_len, "MAXU": max_u,
            "MAXS": int(layout.Bd_row.shape[2]), "NMARG": max(max_u, n_pol),
            "SPARSE_SINGLE": int(SPARSE_TREE and layout.n_factors == 1
                                 and bool(layout.B_sparse[0]))}


def local_bytes(layout: ModelLayout, compute_dtype: np.dtype) -> int:
    """Bytes of the per-thread arrays a build declares (the kernel's local memory)."""
    z = kernel_sizes(layout)
    reals = (3 * z["STOT"] + z["NJ"] + 2 * z["NPOL"] + z["NJO"]          # the step
             + z["HORIZON"] * z["STOT"] + z["HORIZON"] + z["NNODES"] + z["NJ"]   # the tree
             + z["NMARG"])                                               # action selection
    ints = z["NJO"]                                                      # touched outcomes
    if z["NF"] > 1:
        reals += 3 * z["STOT"] + z["NJ"]                                 # fixed-point sweeps
    if z["SPARSE_SINGLE"]:                                               # one sparse factor
        reals += z["HORIZON"] * z["MAXU"] + z["STOT"]
        ints += (z["HORIZON"] + 2) * z["STOT"] + z["HORIZON"]
    return reals * compute_dtype.itemsize + 4 * ints


def build_source(layout: ModelLayout, state_dtype: np.dtype, compute_dtype: np.dtype,
                 offsets: dict[str, int], min_blocks: int = MIN_BLOCKS) -> str:
    """The CUDA source of one build: the prelude of constants, then ``fused_step.cu``."""
    lines = [f"#define BLOCK {BLOCK}", f"#define MIN_BLOCKS {int(min_blocks)}",
             f"#define REAL {_C_TYPES[compute_dtype]}",
             f"#define STATE_T {_C_TYPES[state_dtype]}",
             f"#define AL_EPS {EPS!r}", f"#define AL_EXP_M16 {EXP_M16!r}",
             f"#define AL_TIE_TOL {TIE_TOL!r}"]
    lines += [f"#define {k} {v}" for k, v in kernel_sizes(layout).items()]
    lines += [f"#define OFF_{k} {v}LL" for k, v in offsets.items()]
    return "\n".join(lines) + "\n" + SOURCE_PATH.read_text()


def host_cache_dir() -> Path:
    """Where host builds are kept: ``$AGENTLOOP_CACHE/fused`` (default ``~/.cache/agentloop``)."""
    root = os.environ.get("AGENTLOOP_CACHE") or Path.home() / ".cache" / "agentloop"
    return Path(root) / "fused"


def host_compiler() -> str | None:
    """The C++ compiler host builds use (``$CXX``, else ``c++`` or ``g++`` on the PATH)."""
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return name
    return None


_HOST_FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-x", "c++",
               "-DAGENTLOOP_HOST")
_host_libraries: dict[str, ctypes.CDLL] = {}


def host_library(source: str) -> ctypes.CDLL:
    """The host build of ``source`` (compiled once per source text and cached on disk)."""
    compiler = host_compiler()
    if compiler is None:
        raise ConfigError("kernel 'fused' on NumPy builds the CUDA source for the host and "
                          "needs a C++ compiler (set CXX, or install g++)")
    digest = hashlib.sha256((" ".join(_HOST_FLAGS) + "\n" + source).encode()).hexdigest()[:24]
    if digest in _host_libraries:
        return _host_libraries[digest]
    target = host_cache_dir() / f"fused_step-{digest}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"kernel 'fused': cannot create the host build's cache "
                              f"{target.parent} ({exc}); set AGENTLOOP_CACHE to a writable "
                              f"folder") from None
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp) / "fused_step.cu"
            src.write_text(source)
            out = Path(tmp) / target.name
            done = subprocess.run([compiler, *_HOST_FLAGS, str(src), "-o", str(out)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ConfigError(f"kernel 'fused': the host build failed ({compiler}): "
                                  f"{done.stderr.strip()[-2000:]}")
            os.replace(out, target)            # atomic: a concurrent build finds a whole file
    library = ctypes.CDLL(str(target))
    i64, f64, ptr = ctypes.c_longlong, ctypes.c_double, ctypes.c_void_p
    library.fused_step_host.restype = None
    library.fused_step_host.argtypes = ([i64, i64] + [ptr] * 10 + [i64] * 6 + [f64] * 4)
    _host_libraries[digest] = library
    return library


def _flags(config: InferenceConfig) -> int:
    return ((_FLAG_UTILITY if config.use_utility else 0)
            | (_FLAG_INFO_GAIN if config.use_states_info_gain else 0)
            | (_FLAG_STOCHASTIC if config.action_selection == "stochastic" else 0)
            | (_FLAG_FULL_SAMPLING if config.sampling_mode == "full" else 0))


class FusedStep:
    """The fused kernel for one population's layout and config, on ``xp``'s device.

    Args:
        layout: the population's model layout (``layout_of(model, config)``).
        config: its inference config (learning is not supported here).
        xp: ``cupy`` (a CUDA build through NVRTC) or ``numpy`` (the host build).
        compute_dtype: precision of every intermediate (``"float64"`` as the Numba step).
        min_blocks: the launch bounds' resident blocks per multiprocessor (GPU builds;
            default the module's :data:`MIN_BLOCKS` at construction).
    """

    def __init__(self, layout: ModelLayout, config: InferenceConfig, xp: ModuleType,
                 compute_dtype: str = "float64", min_blocks: int | None = None) -> None:
        cdt = np.dtype(compute_dtype)
        need = local_bytes(layout, cdt)
        if need > LOCAL_BYTES_LIMIT:
            raise ConfigError(
                f"kernel 'fused': this model needs {need:,} bytes of local arrays per thread "
                f"(limit {LOCAL_BYTES_LIMIT:,}: {layout.n_joint} joint states, "
                f"{layout.n_joint_obs} joint outcomes); use kernel='array'")
        self.xp = xp
        self.config = config
        self.layout = layout
        self.flags = _flags(config)
        ints, floats, offsets = pack_layout(layout)
        self.min_blocks = MIN_BLOCKS if min_blocks is None else int(min_blocks)
        self.source = build_source(layout, np.dtype(layout.dtype), cdt, offsets,
                                   self.min_blocks)
        self._mi = xp.asarray(ints)
        self._mf = xp.asarray(floats)
        if xp is np:
            self._host = host_library(self.source)
            self._max_blocks = 1
        else:
            self._host = None
            module = xp.RawModule(code=self.source, options=NVRTC_OPTIONS)
            self._kernel = module.get_function("fused_step")
            sms = xp.cuda.Device().attributes["MultiProcessorCount"]
            self._max_blocks = int(sms) * BLOCKS_PER_SM

    def __call__(self, obs: Any, qs: Any, prev_action: Any, started: Any, q_pi: Any, G: Any,
                 actions: Any, keys: Any, lo: int, hi: int, tick: int, num_iter: int,
                 max_depth: int) -> None:
        """Step rows ``lo..hi`` of the per-agent ``xp`` arrays (all C-contiguous: ``obs``
        int64 ``(n, modalities)``, ``qs`` ``(n, sum S_f)``, ``prev_action``/``actions`` int64
        ``(n, factors)``, ``started`` uint8, ``q_pi``/``G`` ``(n, policies)`` in the state
        dtype, ``keys`` the agents' uint64 random-stream keys) as tick ``tick``."""
        if hi <= lo:
            return
        cfg = self.config
        scalars = (int(lo), int(hi), int(tick), int(num_iter), max(1, int(max_depth)),
                   self.flags)
        reals = (float(cfg.gamma), float(cfg.alpha), float(cfg.dF), float(cfg.dF_tol))
        arrays = (self._mi, self._mf, obs, qs, prev_action, started, q_pi, G, actions, keys)
        if self._host is not None:
            self._host.fused_step_host(1, 1, *(a.ctypes.data for a in arrays), *scalars,
                                       *reals)
            return
        blocks = min(self._max_blocks, -(-(hi - lo) // BLOCK))
        self._kernel((blocks,), (BLOCK,), (*arrays, *(np.int64(s) for s in scalars),
                                           *(np.float64(r) for r in reals)))
