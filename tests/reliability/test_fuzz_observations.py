"""Fuzzing observations: ``Agents.step`` and ``Engine.step`` on arrays of any shape, dtype,
layout and writability: actions, or :class:`ObservationError` with every agent's state
unchanged.

Property tests (hypothesis, derandomized: the same examples on every run);
``--hypothesis-show-statistics`` shows how the examples split between the outcomes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine import Agents, Engine
from engine.errors import ObservationError
from tests.reliability.fuzz_support import (
    FUZZ,
    event,
)
from world.models import grid_model

OBS_MODEL = grid_model(3)                      # num_obs (9, 3): two modalities
NUM_OBS = np.array(OBS_MODEL.num_obs)
N_AGENTS = 4
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
OTHER_DTYPES = ("bool", "float32", "float64", "complex128", "object", "U4", "datetime64[s]")


def _valid_obs(n: int) -> st.SearchStrategy[np.ndarray]:
    return st.tuples(*(st.lists(st.integers(0, int(o) - 1), min_size=n, max_size=n)
                       for o in NUM_OBS)).map(lambda cols: np.array(cols, dtype=np.int64).T)


@st.composite
def observations(draw: st.DrawFn, n: int) -> Any:
    """Observation candidates: valid ones in every integer dtype and memory layout, and
    wrong shapes, dtypes, values (negative, out of range, huge uint64, NaN) and types."""
    base = draw(_valid_obs(n))
    kind = draw(st.sampled_from(["valid", "valid", "value", "dtype", "shape", "wild",
                                 "not-array"]))
    if kind == "value":
        i, m = draw(st.integers(0, n - 1)), draw(st.integers(0, len(NUM_OBS) - 1))
        value = draw(st.sampled_from([-1, int(NUM_OBS[m]), 2**31, -2**62, 2**63, 2**64 - 1]))
        if value >= 2**63:
            base = base.astype(np.uint64)
        base[i, m] = value
    elif kind == "dtype":
        dtype = draw(st.sampled_from(OTHER_DTYPES))
        base = base.astype(dtype)
        if dtype.startswith("float") and draw(st.booleans()):
            base[draw(st.integers(0, n - 1)), 0] = np.nan
    elif kind == "shape":
        shape = draw(st.sampled_from([(n,), (n, 1), (n, 3), (n + 1, 2), (n - 1, 2), (2, n),
                                      (n, 2, 1), (1, n, 2), (), (0, 2)]))
        base = np.resize(base, shape)
    elif kind == "wild":
        dtype = draw(st.sampled_from(INT_DTYPES + ("float64", "bool")))
        shape = draw(st.sampled_from([(n, 2), (n, 2), (n, 3), (2, n)]))
        base = draw(hnp.arrays(dtype, shape))
    elif kind == "not-array":
        return draw(st.sampled_from([base.tolist(), None, 3, "obs", base.tobytes()]))
    if base.dtype.kind in "iu" and kind in ("valid", "value") and draw(st.booleans()):
        cast = base.astype(draw(st.sampled_from(INT_DTYPES)))
        if np.array_equal(cast.astype(object), base.astype(object)):   # the values fit
            base = cast
    layout = draw(st.sampled_from(["C", "F", "strided", "C"]))
    if layout == "F":
        base = np.asfortranarray(base)
    elif layout == "strided" and base.ndim == 2:
        wide = np.zeros((base.shape[0], base.shape[1] * 2), dtype=base.dtype)
        wide[:, ::2] = base
        base = wide[:, ::2]
    if draw(st.booleans()):
        base.setflags(write=False)
    return base


def _is_valid(obs: Any, n: int) -> bool:
    return (isinstance(obs, np.ndarray) and obs.dtype.kind in "iu"
            and obs.shape == (n, len(NUM_OBS)) and bool((obs >= 0).all())
            and bool((obs < NUM_OBS).all()))


@settings(FUZZ, max_examples=250)
@given(n=st.integers(1, N_AGENTS), steps=st.integers(1, 3), data=st.data())
def test_agents_step_works_or_raises_observation_error(n: int, steps: int,
                                                       data: st.DataObject) -> None:
    agents = Agents(OBS_MODEL, n, seed=2)
    twin = Agents(OBS_MODEL, n, seed=2)      # fed the same valid ticks as int64 C arrays
    for _ in range(steps):
        obs = data.draw(observations(n))
        qs, tick = [q.copy() for q in agents.qs], agents.tick
        actions, q_pi = agents.actions.copy(), agents.q_pi.copy()
        event(f"{'valid' if _is_valid(obs, n) else 'invalid'} {type(obs).__name__}")
        if _is_valid(obs, n):
            got = agents.step(obs)
            expected = twin.step(np.array(obs, dtype=np.int64))
            np.testing.assert_array_equal(got, expected)
            for ours, theirs in zip(agents.qs, twin.qs, strict=True):
                np.testing.assert_array_equal(ours, theirs)
            continue
        with pytest.raises(ObservationError):
            agents.step(obs)
        assert agents.tick == tick
        for before, after in zip(qs, agents.qs, strict=True):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(actions, agents.actions)
        np.testing.assert_array_equal(q_pi, agents.q_pi)


@pytest.fixture(scope="module")
def engine() -> Any:
    with Engine(OBS_MODEL, N_AGENTS, workers=0, seed=3, chunk=2) as eng:
        yield eng


def _same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_engine_step_works_or_raises_observation_error(engine: Engine,
                                                       data: st.DataObject) -> None:
    obs = data.draw(observations(N_AGENTS))
    wrap = data.draw(st.sampled_from(["bare", "bare", "list", "dict", "wrong-dict", "pair"]))
    given_obs: Any = {"bare": obs, "list": [obs], "dict": {"main": obs},
                      "wrong-dict": {"other": obs}, "pair": (obs, obs)}[wrap]
    before, tick = engine.agent_state(), engine.tick
    valid = _is_valid(obs, N_AGENTS) and wrap in ("bare", "list", "dict")
    event("valid" if valid else "invalid")
    if valid:
        actions = engine.step(given_obs)
        assert engine.tick == tick + 1
        assert ((np.asarray(actions) >= 0)
                & (np.asarray(actions) < np.array(OBS_MODEL.num_controls))).all()
        return
    with pytest.raises(ObservationError):
        engine.step(given_obs)
    assert engine.tick == tick
    assert _same_state(before, engine.agent_state())
