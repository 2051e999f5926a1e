"""Quantized beliefs: the compact form agents' posteriors take in shared memory between ticks.

Codecs ``"uint16"`` (default) and ``"uint8"`` (log-domain codes relative to each factor's
largest entry) and ``"float32"``; the code, the choice of its range and its error bound are in
docs/architecture.md (`beliefs.py`: belief codecs)."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Final

import numpy as np
from numba import njit

from engine.errors import ConfigError

#: The codecs by name: (code dtype, log range L, largest non-zero code K); float32 has no code.
CODECS: Final[dict[str, tuple[np.dtype, float, int]]] = {
    "uint16": (np.dtype(np.uint16), 45.0, 65534),
    "uint8": (np.dtype(np.uint8), 40.0, 254),
    "float32": (np.dtype(np.float32), 0.0, 0),
}
#: The codec shared memory uses unless told otherwise.
DEFAULT_CODEC: Final = "uint16"
#: pymdp's additive epsilon inside ln(p + EPS); the floors are chosen against it.
PYMDP_EPS: Final = 1e-16


# ------------------------------------------------------------------------------------ kernels
@njit(cache=True, inline="always")
def _encode_slice(src: np.ndarray, dst: np.ndarray, inv_step: float, max_code: int,
                  floor_ratio: float) -> None:
    """Codes of one factor's entries ``src`` (1-d) into ``dst`` (see :func:`encode_log`)."""
    m = src.shape[0]
    top = 0.0
    for k in range(m):
        top = max(top, np.float64(src[k]))                  # NaN entries are skipped
    if not (top > 0.0 and top < math.inf):
        for k in range(m):
            dst[k] = 0
        return
    zero_code = max_code + 1
    limit = max_code + 0.5
    log_top = math.log(top)
    threshold = top * floor_ratio
    for k in range(m):
        dst[k] = zero_code
    # only entries above the floor take a logarithm (in belief rows, usually a few); nothing is
    # stored otherwise, so the compiler cannot evaluate the logarithm for every entry
    for k in range(m):
        v = np.float64(src[k])          # float() keeps float32 in Numba: logf, not log
        if v > threshold:
            x = (log_top - math.log(v)) * inv_step
            if x < limit:
                dst[k] = int(x + 0.5)


@njit(cache=True)
def encode_log(src: np.ndarray, dst: np.ndarray, state_offset: np.ndarray, lo: int, hi: int,
               inv_step: float, max_code: int, floor_ratio: float) -> None:
    """Log-domain code of rows ``[lo, hi)`` of ``src`` (float) into ``dst`` (unsigned ints).

    ``dst[i, k] = round(ln(top / src[i, k]) * inv_step)`` with ``top`` the largest entry of the
    factor slice holding ``k``, for entries above ``top * floor_ratio`` (``floor_ratio =
    exp(-(max_code + 1/2) / inv_step)``); every other entry (zero, negative, NaN, below the
    floor) gets the zero code ``max_code + 1``. A slice whose largest entry is not positive and
    finite codes as all zeros (uniform).
    """
    n_factors = state_offset.shape[0] - 1
    for i in range(lo, hi):
        for f in range(n_factors):
            a, b = state_offset[f], state_offset[f + 1]
            _encode_slice(src[i, a:b], dst[i, a:b], inv_step, max_code, floor_ratio)


def _encode_slices_xp(xp: ModuleType, v: Any, inv_step: float, max_code: int,
                      floor_ratio: float) -> Any:
    """:func:`_encode_slice` for every row of ``v`` (float64 ``(k, S_f)``) at once, as array
    operations; returns the codes as int64."""
    top = xp.fmax(xp.fmax.reduce(v, axis=1) if xp is np else xp.nanmax(v, axis=1), 0.0)
    usable = (top > 0.0) & (top < math.inf)
    safe_top = xp.where(usable, top, 1.0)[:, None]
    above = v > safe_top * floor_ratio
    x = (xp.log(safe_top) - xp.log(xp.where(above, v, 1.0))) * inv_step
    codes = xp.where(above & (x < max_code + 0.5), xp.floor(x + 0.5), max_code + 1)
    return xp.where(usable[:, None], codes, 0).astype(xp.int64)


@njit(cache=True, inline="always")
def _decode_slice(src: np.ndarray, dst: np.ndarray, table: np.ndarray, max_code: int) -> None:
    """One factor's codes ``src`` (1-d) to a distribution in ``dst`` (see :func:`decode_log`)."""
    m = src.shape[0]
    zero_code = max_code + 1
    for k in range(m):
        dst[k] = 0.0
    total = 0.0
    for k in range(m):
        c = np.int64(src[k])
        if c != zero_code:
            dst[k] = table[0, c >> 8] * table[1, c & 255]
            total += float(dst[k])
    if total > 0.0:
        inv = 1.0 / total
        for k in range(m):
            dst[k] = float(dst[k]) * inv
    else:
        for k in range(m):
            dst[k] = 1.0 / m


@njit(cache=True)
def decode_log(src: np.ndarray, dst: np.ndarray, state_offset: np.ndarray, lo: int, hi: int,
               table: np.ndarray, max_code: int) -> None:
    """Rows ``[lo, hi)`` of log codes ``src`` back to distributions in ``dst`` (float).

    Each entry becomes ``exp(-code * step)``, read as ``table[0, code >> 8] *
    table[1, code & 255]`` (``table[0, h] = exp(-256 h step)``, ``table[1, l] = exp(-l step)``,
    so within 2 ulp of the exponential), or 0 for the zero code ``max_code + 1``; each factor
    slice is then scaled to sum to 1 (its sum accumulated in float64). A slice of zero codes
    only (never written by :func:`encode_log`) decodes as uniform.
    """
    n_factors = state_offset.shape[0] - 1
    for i in range(lo, hi):
        for f in range(n_factors):
            a, b = state_offset[f], state_offset[f + 1]
            _decode_slice(src[i, a:b], dst[i, a:b], table, max_code)


@njit(cache=True)
def copy_rows(src: np.ndarray, dst: np.ndarray, lo: int, hi: int) -> None:
    """``dst[lo:hi] = src[lo:hi]`` element by element (casting to ``dst``'s dtype)."""
    for i in range(lo, hi):
        for k in range(src.shape[1]):
            dst[i, k] = src[i, k]


# ------------------------------------------------------------------------------------ codec
class BeliefCodec:
    """One belief codec bound to a model's factor layout.

    Args:
        name: ``"uint16"`` (default), ``"uint8"`` or ``"float32"``.
        state_offset: the factors' column offsets in a belief row, ``(F + 1,)`` ints starting
            at 0 (``ModelLayout.state_offset``).

    ``encode(beliefs, codes, lo, hi)`` and ``decode(codes, beliefs, lo, hi)`` convert rows
    ``[lo, hi)`` (default: all rows) between a float belief array ``(n, S_total)`` and a code
    array of :attr:`dtype` of the same shape, writing into the given buffers.
    """

    def __init__(self, name: str = DEFAULT_CODEC, state_offset: np.ndarray | None = None) -> None:
        if name not in CODECS:
            raise ConfigError(f"unknown belief codec {name!r}; choose one of "
                              f"{', '.join(repr(c) for c in CODECS)}")
        if state_offset is None:
            raise ConfigError("BeliefCodec: state_offset is required (ModelLayout.state_offset)")
        offsets = np.asarray(state_offset)
        if (offsets.ndim != 1 or offsets.size < 2 or not np.issubdtype(offsets.dtype, np.integer)
                or offsets[0] != 0 or np.any(np.diff(offsets) < 1)):
            raise ConfigError(f"BeliefCodec: state_offset must be increasing ints from 0 with at "
                              f"least one factor, got {state_offset!r}")
        self.name = name
        self.state_offset = np.ascontiguousarray(offsets, dtype=np.int64)
        self.state_offset.setflags(write=False)
        self.dtype, self.log_range, self.max_code = CODECS[name]
        self.is_log = name != "float32"
        self.step = self.log_range / self.max_code if self.is_log else 0.0
        self._floor_ratio = math.exp(-(self.max_code + 0.5) * self.step)
        codes = np.arange(256, dtype=np.float64)
        self._table = np.exp(-self.step * np.stack([256.0 * codes, codes]))
        self._table.setflags(write=False)

    def __repr__(self) -> str:
        return f"BeliefCodec({self.name!r}, S_total={self.state_size})"

    @property
    def state_size(self) -> int:
        """Columns of a belief row (``S_total``)."""
        return int(self.state_offset[-1])

    @property
    def zero_code(self) -> int:
        """The code of an entry that decodes to exactly 0 (log codecs)."""
        return self.max_code + 1

    @property
    def floor(self) -> float:
        """Smallest entry, relative to its factor's largest, kept non-zero: ``e^-L``."""
        return math.exp(-self.log_range) if self.is_log else 0.0

    @property
    def max_rel_error(self) -> float:
        """Maximum relative error of a decoded entry at or above the floor (``e^step - 1``).

        For float32 it is float32's rounding (``2^-24``); the sum-to-one renormalisation of the
        log codecs is included (up to a ``S_f * e^-L`` term below 1e-13).
        """
        return math.expm1(self.step) if self.is_log else 2.0 ** -24

    def nbytes_per_agent(self, S_total: int | None = None) -> int:
        """Bytes one agent's encoded beliefs take (``S_total`` states; default the layout's)."""
        size = self.state_size if S_total is None else int(S_total)
        return size * self.dtype.itemsize

    def empty(self, n: int) -> np.ndarray:
        """A code buffer for ``n`` agents, ``(n, S_total)`` of :attr:`dtype`."""
        return np.empty((int(n), self.state_size), dtype=self.dtype)

    def encode(self, src: np.ndarray, dst: np.ndarray, lo: int = 0, hi: int | None = None
               ) -> None:
        """Encode rows ``[lo, hi)`` of float beliefs ``src`` into the code array ``dst``."""
        lo, hi = self._check(src, dst, lo, hi)
        if self.is_log:
            encode_log(src, dst, self.state_offset, lo, hi, 1.0 / self.step, self.max_code,
                       self._floor_ratio)
        else:
            copy_rows(src, dst, lo, hi)

    def encode_array(self, xp: ModuleType, src: Any) -> Any:
        """The codes of float beliefs ``src`` (an ``xp`` array ``(k, S_total)``), computed where
        they live (on the GPU with CuPy, so only codes cross the bus): the numbers
        :meth:`encode` gives, up to the last bit of ``ln`` on the device (a code can then differ
        by one where ``ln(top / p) / step`` falls within an ulp of a half)."""
        if not self.is_log:
            return src.astype(self.dtype)
        codes = xp.empty(src.shape, dtype=self.dtype)
        for f in range(self.state_offset.shape[0] - 1):
            a, b = int(self.state_offset[f]), int(self.state_offset[f + 1])
            codes[:, a:b] = _encode_slices_xp(xp, src[:, a:b].astype(xp.float64),
                                              1.0 / self.step, self.max_code,
                                              self._floor_ratio)
        return codes

    def decode(self, src: np.ndarray, dst: np.ndarray, lo: int = 0, hi: int | None = None
               ) -> None:
        """Decode rows ``[lo, hi)`` of the code array ``src`` into float beliefs ``dst``."""
        lo, hi = self._check(dst, src, lo, hi)
        if self.is_log:
            decode_log(src, dst, self.state_offset, lo, hi, self._table, self.max_code)
        else:
            copy_rows(src, dst, lo, hi)

    def _check(self, beliefs: np.ndarray, codes: np.ndarray, lo: int, hi: int | None
               ) -> tuple[int, int]:
        """Validate the two arrays and the row range; returns ``(lo, hi)`` as ints."""
        if (beliefs.ndim != 2 or beliefs.shape[1] != self.state_size
                or beliefs.dtype not in (np.float32, np.float64)):
            raise ConfigError(f"{self!r}: beliefs must be a float32/float64 array "
                              f"(n, {self.state_size}), "
                              f"got {beliefs.dtype} {beliefs.shape}")
        if codes.shape != beliefs.shape or codes.dtype != self.dtype:
            raise ConfigError(f"{self!r}: codes must be a {self.dtype} array {beliefs.shape}, "
                              f"got {codes.dtype} {codes.shape}")
        n = beliefs.shape[0]
        lo, hi = int(lo), (n if hi is None else int(hi))
        if not 0 <= lo <= hi <= n:
            raise ConfigError(f"{self!r}: row range [{lo}, {hi}) is not within [0, {n}]")
        return lo, hi
