"""Numerical constants the model layout and every kernel share (pymdp 0.0.7.1's)."""

from __future__ import annotations

import numpy as np

#: pymdp's ``EPS_VAL``: added before every logarithm of a probability.
EPS = 1e-16
#: pymdp's spm_MDP_G threshold and offset.
EXP_M16 = float(np.exp(-16.0))
#: pymdp 1.x's ``MINVAL`` (``jnp.finfo(float).eps``): the floor of every probability it takes
#: a logarithm of.
PYMDP1_MINVAL = float(np.finfo(np.float64).eps)
#: Deterministic selection treats probabilities this close to the largest as tied and takes
#: the lowest index: mirror-image policies tie exactly in exact arithmetic, and rounding
#: (which differs between NumPy, Numba and a GPU) must not pick among them.
TIE_TOL = 1e-12
#: Agents whose state inference and shared-tail walk run side by side (the kernels' lanes).
LANES = 16
#: The lane walk's scratch per thread, at most (floats; 2 MiB): a larger model walks one agent
#: at a time.
LANE_WALK_FLOATS = 1 << 18
