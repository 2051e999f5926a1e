"""Hard limits on what a model, a config or a population may ask for, checked from the
declared sizes before anything is enumerated or allocated (docs/limits.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.errors import ConfigError

#: most policies a population may have (each agent keeps q(pi) and G over all of them, and every
#: Numba thread a first-step memo of 64 of them)
MAX_POLICIES = 1 << 20
#: longest planning horizon
MAX_POLICY_LEN = 64
#: most agents in one population (agent ids and chunk indices stay well inside int64)
MAX_AGENTS = 1 << 31
#: seeds are unsigned 63-bit integers (the kernels take them as int64)
MAX_SEED = (1 << 63) - 1


def policy_count(num_controls: Sequence[int], control: Sequence[int], policy_len: int) -> int:
    """How many policies enumerating every action sequence gives; ``MAX_POLICIES + 1`` stands
    for any larger number (the exact power is never computed)."""
    joint = math.prod(int(num_controls[f]) for f in set(control) if 0 <= f < len(num_controls))
    if joint <= 1:
        return 1
    if policy_len * math.log2(joint) > math.log2(MAX_POLICIES) + 1:
        return MAX_POLICIES + 1
    return min(joint ** policy_len, MAX_POLICIES + 1)


def check_policies(num_controls: Sequence[int], control: Sequence[int], policy_len: int,
                   explicit: int | None = None) -> int:
    """The number of policies (``explicit``: the size of an explicit set); ConfigError when the
    horizon or the count is over the limits."""
    if policy_len > MAX_POLICY_LEN:
        raise ConfigError(f"policy_len {policy_len} is more than agentloop plans ahead "
                          f"(at most {MAX_POLICY_LEN})")
    count = policy_count(num_controls, control, policy_len) if explicit is None else explicit
    if count <= MAX_POLICIES:
        return count
    if explicit is not None:
        what = f"{explicit:,} explicit policies"
    else:
        joint = math.prod(int(num_controls[f]) for f in set(control))
        digits = policy_len * math.log10(joint)
        total = f"{joint ** policy_len:,}" if digits < 24 else f"about 10^{digits:.0f}"
        what = (f"policy_len {policy_len} gives {total} policies ({joint} joint actions ** "
                f"{policy_len})")
    raise ConfigError(f"{what}, more than agentloop's limit of {MAX_POLICIES:,}; shorten "
                      f"the horizon or give an explicit policy set")


def refuse_idle_actions(num_controls: Sequence[int], control: Sequence[int]) -> None:
    """ConfigError when ``InferenceConfig.control_fac_idx`` leaves out a factor with several
    actions: pymdp 0.0.7.1 would still enumerate that factor's actions in its policies."""
    idle = [f for f, u in enumerate(num_controls) if u > 1 and f not in control]
    if idle:
        raise ConfigError(
            f"InferenceConfig.control_fac_idx={list(control)} leaves out factor(s) {idle} "
            f"with several actions ({[int(num_controls[f]) for f in idle]}), whose actions "
            f"pymdp 0.0.7.1 would still enumerate in its policies: list them in "
            f"control_fac_idx, or give the model an explicit policy set")
