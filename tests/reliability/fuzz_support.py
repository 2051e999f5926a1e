"""What the fuzzing tests share: hypothesis settings, outcome events, byte mutations."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, Phase, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine.ticklog.schema import TickLogHeader

#: derandomized (a fixed sequence of examples, so CI is deterministic), no example database
#: written into the tree, no per-example deadline (the machine is shared)
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def event(text: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (no-op outside a given test)."""
    try:
        hypothesis_event(text)
    except InvalidArgument:
        pass


#: what a ModelError may name
ARRAY_NAME = re.compile(r"^(A|B|C|D|E|pA|pB|policies|A_factor_list|B_factor_list|"
                        r"control_fac_idx)(\[\d+\])?$")


# ============================================================================ byte mutations
MUTATIONS = ("flip", "byte", "truncate", "insert", "duplicate", "delete")


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_ops: int = 3) -> bytes:
    """``data`` with 1..max_ops bit flips, byte overwrites, truncations, insertions of random
    bytes, duplicated chunks or deleted chunks, at positions anywhere in the buffer."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=16))
            continue
        kind = draw(st.sampled_from(MUTATIONS))
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            length = draw(st.integers(1, min(512, len(buf) - pos)))
            if kind == "duplicate":
                buf[pos:pos] = buf[pos:pos + length]
            else:
                del buf[pos:pos + length]
    return bytes(buf)


LOG_AGENTS = 5


def log_header(model_npz: bytes | None = None) -> TickLogHeader:
    return TickLogHeader(n_agents=LOG_AGENTS, hz=10.0, seed=1, model_npz=model_npz,
                         config={"policy_len": 1}, world={"name": "fuzz"})
