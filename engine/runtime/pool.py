"""ArrayPool: one block of memory preallocated at start-up, lent out as named scratch arrays.

A worker asks for every scratch buffer it will use before its first tick; later requests for
the same name return the same array, so a warm tick allocates nothing.
"""

from __future__ import annotations

import numpy as np

from engine.errors import PoolError

_ALIGN = 64


class ArrayPool:
    """Named arrays carved from one preallocated, cache-line-aligned block."""

    def __init__(self, capacity_bytes: int) -> None:
        self._block = np.zeros(capacity_bytes + _ALIGN, dtype=np.uint8)
        start = (-self._block.ctypes.data) % _ALIGN
        self._free = start
        self._end = start + capacity_bytes
        self._lent: dict[str, np.ndarray] = {}

    @staticmethod
    def bytes_for(requests: list[tuple[tuple[int, ...], str]]) -> int:
        """Capacity that holds these ``(shape, dtype)`` requests with alignment."""
        total = 0
        for shape, dtype in requests:
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            total += -(-size // _ALIGN) * _ALIGN
        return total

    def borrow(self, name: str, shape: tuple[int, ...], dtype: str | np.dtype) -> np.ndarray:
        """The array lent under ``name`` (created on first request, zeroed)."""
        found = self._lent.get(name)
        if found is not None:
            if found.shape != tuple(shape) or found.dtype != np.dtype(dtype):
                raise PoolError(f"pool: {name!r} was lent as {found.shape} {found.dtype}, "
                                f"asked again as {tuple(shape)} {np.dtype(dtype)}")
            return found
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        if self._free + size > self._end:
            raise PoolError(f"pool: no room for {name!r} ({size} bytes; "
                            f"{self._end - self._free} left of the preallocated block)")
        view = self._block[self._free:self._free + size].view(dtype).reshape(shape)
        self._free += -(-size // _ALIGN) * _ALIGN
        self._lent[name] = view
        return view

    @property
    def lent_bytes(self) -> int:
        return sum(a.nbytes for a in self._lent.values())
