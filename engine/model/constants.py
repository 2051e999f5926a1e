"""Numerical constants the model layout and every kernel share (pymdp 0.0.7.1's)."""

from __future__ import annotations

import numpy as np

#: pymdp's ``EPS_VAL``: added before every logarithm of a probability.
EPS = 1e-16
#: pymdp's spm_MDP_G threshold and offset.
EXP_M16 = float(np.exp(-16.0))
