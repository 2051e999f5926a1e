"""Backend selection: which code path steps a population.

* ``"numba"``: the compiled CPU kernels (``kernels/numba/``), the default;
* ``"reference"``: the plain NumPy float64 specification (``kernels/reference.py``);
* ``"cupy"``: the batched array code of ``kernels/array_step.py`` on an NVIDIA GPU through CuPy;
* ``"xp-numpy"``: the same batched array code on the CPU through NumPy (what CI tests);
* ``"auto"``: ``"cupy"`` when CuPy and a GPU are usable, otherwise ``"numba"``.

Nothing here imports CuPy at module import time; :func:`cupy_available` tries it on demand and
never raises.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.model.config import InferenceConfig

BackendName = Literal["numba", "reference", "cupy", "xp-numpy", "auto"]
ResolvedBackend = Literal["numba", "reference", "cupy", "xp-numpy"]

#: Every name :func:`resolve_backend` accepts.
BACKENDS: tuple[str, ...] = ("numba", "reference", "cupy", "xp-numpy", "auto")


def cupy_available() -> tuple[bool, str]:
    """Whether CuPy imports and sees at least one CUDA device, and why not when it does not.

    Returns ``(True, "<n> CUDA device(s)")`` or ``(False, reason)``; never raises.
    """
    try:
        import cupy  # noqa: PLC0415  (optional dependency, imported on demand)
    except Exception as exc:  # noqa: BLE001  (ImportError, or a broken CUDA install)
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001  (CUDARuntimeError: no driver, no device)
        return False, f"no usable CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no CUDA device found"
    return True, f"{count} CUDA device(s)"


def resolve_backend(name: str, config: InferenceConfig | None = None) -> ResolvedBackend:
    """The backend that will run for the requested ``name``.

    ``"auto"`` gives ``"cupy"`` when :func:`cupy_available`, else ``"numba"`` (the array
    backend runs every config since it gained learning; ``config`` is kept for callers).
    ``"cupy"`` without CuPy or a GPU raises :class:`ConfigError` in one sentence naming the
    reason; an unknown name raises too.
    """
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, "
                          f"got {name!r}")
    if name == "auto":
        ok, _ = cupy_available()
        return "cupy" if ok else "numba"
    if name == "cupy":
        ok, reason = cupy_available()
        if not ok:
            raise ConfigError(f"backend 'cupy' needs CuPy and an NVIDIA GPU: {reason}; "
                              "use backend='numba' or 'auto'")
    return name  # type: ignore[return-value]


def array_module(backend: str) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) of a resolved array backend."""
    if backend == "xp-numpy":
        import numpy  # noqa: PLC0415

        return numpy
    if backend == "cupy":
        resolve_backend("cupy")          # the one-sentence error when it is not usable
        import cupy  # noqa: PLC0415

        return cupy
    raise ConfigError(f"backend {backend!r} is not an array (xp) backend; "
                      "use 'xp-numpy' or 'cupy'")
