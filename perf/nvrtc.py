"""NVRTC (the compiler CuPy's ``RawModule`` uses) called through ctypes, with no GPU needed.

The test extra installs NVIDIA's NVRTC wheel on x86-64 Linux, so CI compiles the fused kernel's
CUDA source exactly as CuPy will on a GPU machine; :func:`nvrtc_library` returns None (and
the tests skip) where it is missing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path


def _candidates() -> list[str]:
    """libnvrtc.so.* from NVIDIA's pip wheels (any site-packages on sys.path), then the
    system's loader path."""
    found = []
    for entry in sys.path:                       # CUDA 12 wheels: nvidia/cuda_nvrtc/lib,
        for folder in ("cuda_nvrtc", "cu13"):    # CUDA 13 wheels: nvidia/cu13/lib
            found += sorted(glob.glob(os.path.join(entry, "nvidia", folder, "lib",
                                                   "libnvrtc.so.*")))
    return found + sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*")) + ["libnvrtc.so"]


def nvrtc_library() -> ctypes.CDLL | None:
    """The NVRTC library, or None when none loads."""
    for path in _candidates():
        try:
            for builtins in sorted(glob.glob(str(Path(path).parent / "libnvrtc-builtins.so.*"))):
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)   # libnvrtc loads it by name
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def compile_ptx(library: ctypes.CDLL, source: str,
                options: tuple[str, ...]) -> tuple[int, str, str]:
    """Compile ``source`` with NVRTC: (result code, compile log, PTX)."""
    prog = ctypes.c_void_p()
    rc = library.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"fused_step.cu", 0,
                                    None, None)
    if rc != 0:
        return rc, "nvrtcCreateProgram failed", ""
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        rc = library.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        library.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        library.nvrtcGetProgramLog(prog, log)
        ptx = ""
        if rc == 0:
            library.nvrtcGetPTXSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            library.nvrtcGetPTX(prog, buf)
            ptx = buf.value.decode()
        return rc, log.value.decode(errors="replace"), ptx
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(prog))
