"""A natural logarithm and exponential that LLVM vectorises inside a loop, accurate to about
one ulp.

The outcome entropy of the information gain takes one logarithm per joint outcome, and every
fixed-point sweep and softmax one exponential per state; the C library's ``log`` and ``exp``
are a call per entry that stops the loop from vectorising (this Numba has no SVML). ``vlog``
and ``vexp`` are fdlibm's ``__ieee754_log`` and ``__ieee754_exp``, written branch-free on the
bits.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_EXPONENT = 0x3FF0000000000000


@intrinsic
def _bits_of(typingctx, x):  # noqa: ANN001, ANN202, ARG001
    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _float_of(typingctx, x):  # noqa: ANN001, ANN202, ARG001
    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(cache=True, inline="always")
def vlog(x):
    """ln(x) for a positive normal float64 ``x`` (no checks: zero, subnormals, inf and NaN
    give wrong results)."""
    bits = _bits_of(x)
    k = (bits >> 52) - 1023
    m = _float_of((bits & _MANTISSA) | _ONE_EXPONENT)        # x = m 2^k, m in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    k = k + 1 if big else k
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = float(k)
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


_INV_LN2 = 1.44269504088896338700e+00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
#: Below this ``vexp`` returns 0 (e^-708 is the smallest normal result it builds).
EXP_LOWEST = -708.0


@njit(cache=True, inline="always")
def vexp(x):
    """e^x: 0 below :data:`EXP_LOWEST` (where the true value is subnormal or 0), inf above
    709, NaN for NaN."""
    bad = not (EXP_LOWEST <= x <= 709.0)
    xo = x
    x = 0.0 if bad else x
    k = np.floor(x * _INV_LN2 + 0.5)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    scaled = _float_of(_bits_of(y) + (np.int64(k) << 52))
    if bad:
        return 0.0 if xo < EXP_LOWEST else xo * np.inf
    return scaled
