"""A stand-in for CuPy built on NumPy, so that the code paths agentloop takes only with CuPy
(device arrays copied back with ``.get``, CUDA events and streams, ``cupy.RawModule`` launches,
pinned host buffers, CUDA errors) run in CI, where there is no GPU.

It mimics the parts of CuPy's API that agentloop calls, with CuPy's signatures: arrays are a
NumPy subclass with ``get(out=None)``, ``asarray`` copies (as a host-to-device copy does), and
``RawModule(code=..., options=...).get_function(name)((grid,), (block,), args)`` runs the CUDA
source's host build (``engine.kernels.fused``) over every block and thread of the launch, with
the argument tuple converted as CuPy converts it (arrays to pointers, NumPy scalars to their C
types). It proves the glue, not CuPy's behaviour on a GPU.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from engine.kernels import fused


class FakeArray(np.ndarray):
    """A "device" array: a NumPy array that must be copied back with ``get``."""

    def get(self, out: np.ndarray | None = None) -> np.ndarray:
        host = self.view(np.ndarray)
        if out is None:
            return host.copy()
        if out.shape != host.shape or out.dtype != host.dtype or not out.flags.c_contiguous:
            raise ValueError("cupy.ndarray.get(out=...): out must be C-contiguous with the "
                             "array's shape and dtype")
        np.copyto(out, host)
        return out


def _device(value: Any) -> Any:
    """NumPy results as device arrays (scalars stay scalars)."""
    if isinstance(value, np.ndarray) and not isinstance(value, FakeArray):
        return value.view(FakeArray)
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    return value


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError."""


class CUDADriverError(RuntimeError):
    """cupy.cuda.driver.CUDADriverError."""


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError."""


class _Event:
    def __init__(self, block: bool = False, disable_timing: bool = False,
                 interprocess: bool = False) -> None:
        self.recorded = 0

    def record(self, stream: Any = None) -> None:
        self.recorded += 1

    def synchronize(self) -> None:
        if not self.recorded:
            raise CUDARuntimeError("synchronize on an event never recorded")


class _Stream:
    def synchronize(self) -> None:
        pass


class _Device:
    def __init__(self, device: int = 0) -> None:
        self.id = device
        self.attributes = {"MultiProcessorCount": 4}
        self.mem_info = (8 * 2**30, 16 * 2**30)

    def synchronize(self) -> None:
        pass


class _Kernel:
    """A compiled kernel: the CUDA source's host build, launched over the whole grid."""

    def __init__(self, code: str, name: str) -> None:
        if name != "fused_step":
            raise AttributeError(f"no kernel named {name!r} in the module")
        self.library = fused.host_library(code)
        self.launches: list[tuple[int, int]] = []

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]
                 ) -> None:
        converted = []
        for a in args:
            if isinstance(a, FakeArray):
                converted.append(a.ctypes.data)
            elif isinstance(a, np.ndarray):
                raise TypeError("a NumPy array passed to a CuPy kernel")
            elif isinstance(a, np.integer):
                converted.append(int(a))
            elif isinstance(a, np.floating):
                converted.append(float(a))
            else:
                raise TypeError(f"pass NumPy scalars to a raw kernel, got {type(a).__name__}")
        self.launches.append((grid[0], block[0]))
        self.library.fused_step_host(grid[0], block[0], *converted)


class _RawModule:
    def __init__(self, code: str, options: tuple[str, ...] = (), **kwargs: Any) -> None:
        assert "--fmad=false" in options
        self.code = code

    def get_function(self, name: str) -> _Kernel:
        return _Kernel(self.code, name)


def make_cupy() -> tuple[types.ModuleType, types.ModuleType]:
    """Fresh ``cupy`` and ``cupyx`` stand-ins (install them in ``sys.modules``)."""
    cupy = types.ModuleType("cupy")

    def wrap(name: str) -> Any:
        target = getattr(np, name)
        if not callable(target) or isinstance(target, type):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return _device(target(*args, **kwargs))

        return call

    def asarray(a: Any, dtype: Any = None) -> FakeArray:
        if isinstance(a, FakeArray) and (dtype is None or a.dtype == dtype):
            return a
        return np.array(a, dtype=dtype, copy=True).view(FakeArray)

    def ascontiguousarray(a: Any, dtype: Any = None) -> FakeArray:
        if (isinstance(a, FakeArray) and a.flags.c_contiguous
                and (dtype is None or a.dtype == dtype)):
            return a
        return np.ascontiguousarray(a, dtype=dtype).view(FakeArray)

    cupy.__getattr__ = wrap                              # type: ignore[method-assign]
    cupy.ndarray = FakeArray
    cupy.asarray = asarray
    cupy.ascontiguousarray = ascontiguousarray
    cupy.RawModule = _RawModule
    runtime = types.SimpleNamespace(
        CUDARuntimeError=CUDARuntimeError, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: {"name": b"Fake GPU", "memoryClockRate": 1_000_000,
                                            "memoryBusWidth": 4096,
                                            "totalGlobalMem": 16 * 2**30})
    cupy.cuda = types.SimpleNamespace(
        runtime=runtime, driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
        memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError), Device=_Device,
        Event=_Event, get_current_stream=_Stream)
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype=np.float64: np.empty(shape, dtype=dtype)
    return cupy, cupyx
