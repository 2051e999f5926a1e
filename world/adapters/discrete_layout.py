"""Discrete Gymnasium spaces as flat lists of components indexed from 0: ``DiscreteLayout``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import WorldError

_SUPPORTED = "Discrete, MultiDiscrete, MultiBinary, or a Tuple/Dict of them"


def _spaces() -> Any:
    """``gymnasium.spaces``, imported on first use (the ``adapters`` extra)."""
    try:
        from gymnasium import spaces
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("world.adapters needs gymnasium: pip install 'agentloop[adapters]'"
                          ) from exc
    return spaces


# ----------------------------------------------------------------------------- space flattening
class DiscreteLayout:
    """A discrete space seen as a flat list of components, each indexed from 0.

    Args:
        space: a Gymnasium space: ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, or a
            ``Tuple`` / ``Dict`` of these (nested freely).
        name: how error messages call the space (e.g. ``"agent 'a_0' observation space"``).

    Raises:
        WorldError: naming the first part of ``space`` that is not discrete.

    ``sizes[k]`` is the number of values of component ``k`` and ``starts[k]`` its first value
    (``Discrete(n, start=s)`` is one component of size ``n`` starting at ``s``).
    """

    def __init__(self, space: Any, name: str = "space") -> None:
        self.space = space
        self.name = name
        sizes: list[int] = []
        starts: list[int] = []
        _components(space, name, sizes, starts)
        self.sizes: tuple[int, ...] = tuple(sizes)
        self.starts: tuple[int, ...] = tuple(starts)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._starts = np.asarray(starts, dtype=np.int64)

    @property
    def n_components(self) -> int:
        """Number of components (modalities or control factors) of the space."""
        return len(self.sizes)

    def flatten(self, value: Any) -> np.ndarray:
        """One sample of the space -> int64 ``(n_components,)``, each in ``0..size-1``."""
        raw = np.concatenate(_raw(self.space, value)) if self.sizes else np.zeros(0, np.int64)
        flat = raw.astype(np.int64) - self._starts
        self._check_range(flat[None, :])
        return flat

    def flatten_batch(self, values: Any, n: int) -> np.ndarray:
        """A batch of ``n`` samples (Gymnasium's vector layout) -> int64 ``(n, n_components)``."""
        parts = _raw_batch(self.space, values, n)
        raw = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.int64)
        flat = raw.astype(np.int64) - self._starts
        self._check_range(flat)
        return flat

    def unflatten(self, row: Sequence[int] | np.ndarray) -> Any:
        """One index per component -> a sample of the space (``start`` added back).

        ``Discrete`` gives a Python ``int``, ``MultiDiscrete`` / ``MultiBinary`` an array of the
        space's shape and dtype, ``Tuple`` a tuple and ``Dict`` a dict.
        """
        arr = np.asarray(row, dtype=np.int64).reshape(-1)
        if arr.shape != (self.n_components,):
            raise WorldError(f"{self.name}: expected {self.n_components} indices, got "
                             f"{arr.shape[0]}")
        self._check_range(arr[None, :], what="index")
        value, _ = _unflatten(self.space, arr + self._starts, 0)
        return value

    def unflatten_batch(self, rows: np.ndarray) -> Any:
        """``(n, n_components)`` indices -> a batch in Gymnasium's vector layout."""
        arr = np.asarray(rows, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != self.n_components:
            raise WorldError(f"{self.name}: expected shape (n, {self.n_components}), got "
                             f"{arr.shape}")
        self._check_range(arr, what="index")
        value, _ = _unflatten_batch(self.space, arr + self._starts, 0)
        return value

    def _check_range(self, flat: np.ndarray, what: str = "value") -> None:
        bad = (flat < 0) | (flat >= self._sizes)
        if bad.any():
            row, k = (int(v) for v in np.argwhere(bad)[0])
            where = f"row {row}, " if flat.shape[0] > 1 else ""
            if what == "value":      # report the value as the space writes it (start added)
                got, lo = int(flat[row, k]) + self.starts[k], self.starts[k]
            else:
                got, lo = int(flat[row, k]), 0
            raise WorldError(f"{self.name}: {what} {got} ({where}component {k}) is outside "
                             f"{lo}..{lo + self.sizes[k] - 1}")

    def __repr__(self) -> str:
        return f"DiscreteLayout({self.space!r}, sizes={list(self.sizes)})"


def _components(space: Any, name: str, sizes: list[int], starts: list[int]) -> None:
    spaces = _spaces()
    if isinstance(space, spaces.Discrete):
        sizes.append(int(space.n))
        starts.append(int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        sizes.extend(int(v) for v in np.asarray(space.nvec).reshape(-1))
        starts.extend(int(v) for v in np.asarray(space.start).reshape(-1))
    elif isinstance(space, spaces.MultiBinary):
        k = int(np.prod(space.shape))
        sizes.extend([2] * k)
        starts.extend([0] * k)
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            _components(sub, f"{name}[{i}]", sizes, starts)
    elif isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            _components(sub, f"{name}[{key!r}]", sizes, starts)
    else:
        raise WorldError(f"{name} {space!r} is not discrete; adapters support {_SUPPORTED}")


def _ints(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise WorldError(f"{name}: expected integers, got {arr.dtype} ({value!r})")
    return arr.astype(np.int64)


def _raw(space: Any, value: Any) -> list[np.ndarray]:
    spaces = _spaces()
    if isinstance(space, spaces.Tuple):
        return [p for sub, v in zip(space.spaces, value, strict=True) for p in _raw(sub, v)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _raw(sub, value[key])]
    return [_ints(value, repr(space)).reshape(-1)]


def _raw_batch(space: Any, values: Any, n: int) -> list[np.ndarray]:
    spaces = _spaces()
    if isinstance(space, spaces.Tuple):
        return [p for sub, v in zip(space.spaces, values, strict=True)
                for p in _raw_batch(sub, v, n)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _raw_batch(sub, values[key], n)]
    return [_ints(values, repr(space)).reshape(n, -1)]


def _unflatten(space: Any, raw: np.ndarray, pos: int) -> tuple[Any, int]:
    spaces = _spaces()
    if isinstance(space, spaces.Discrete):
        return int(raw[pos]), pos + 1
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        k = int(np.prod(space.shape))
        return raw[pos:pos + k].astype(space.dtype).reshape(space.shape), pos + k
    if isinstance(space, spaces.Tuple):
        out = []
        for sub in space.spaces:
            value, pos = _unflatten(sub, raw, pos)
            out.append(value)
        return tuple(out), pos
    result = {}
    for key, sub in space.spaces.items():
        result[key], pos = _unflatten(sub, raw, pos)
    return result, pos


def _unflatten_batch(space: Any, raw: np.ndarray, pos: int) -> tuple[Any, int]:
    spaces = _spaces()
    n = raw.shape[0]
    if isinstance(space, spaces.Discrete):
        return raw[:, pos].astype(space.dtype), pos + 1
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        k = int(np.prod(space.shape))
        return raw[:, pos:pos + k].astype(space.dtype).reshape(n, *space.shape), pos + k
    if isinstance(space, spaces.Tuple):
        out = []
        for sub in space.spaces:
            value, pos = _unflatten_batch(sub, raw, pos)
            out.append(value)
        return tuple(out), pos
    result = {}
    for key, sub in space.spaces.items():
        result[key], pos = _unflatten_batch(sub, raw, pos)
    return result, pos

