"""The master checks a tick's observations while it copies them into shared memory (one pass):
the same results as the separate check and copy, and the same one-line error for a bad one."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Engine, ObservationError
from engine.runtime.observations_in import copy_in_range
from world.models import grid_model
from world.process import ProcessWorld


def test_copy_in_range_copies_everything_and_says_whether_it_was_in_range() -> None:
    src = np.array([[0, 2], [4, 0], [1, 1]], dtype=np.int64)
    dst = np.zeros_like(src)
    assert copy_in_range(src, dst, np.array([5, 3]))
    np.testing.assert_array_equal(dst, src)
    for bad in ([2, 3], [-1, 0], [5, 0]):
        src[1] = bad
        assert not copy_in_range(src, dst, np.array([5, 3]))


def test_fast_and_general_observation_paths_give_the_same_results() -> None:
    """int64 C-contiguous observations take the one-pass copy; int32 and Fortran-ordered ones
    the general check and copy: bit-for-bit the same tick after tick."""
    model, n = grid_model(5), 300
    world = ProcessWorld(model, n)
    obs = world.reset(3)
    with Engine(model, n, workers=0, degrade=False) as fast, \
            Engine(model, n, workers=0, degrade=False) as general:
        for k in range(4):
            other = obs.astype(np.int32) if k % 2 else np.asfortranarray(obs)
            actions = fast.step(obs).copy()
            np.testing.assert_array_equal(actions, general.step(other))
            np.testing.assert_array_equal(fast.q_pi, general.q_pi)
            obs = world.step(actions)


def test_a_bad_observation_on_the_fast_path_is_named_and_changes_no_agent() -> None:
    model, n = grid_model(5), 50
    world = ProcessWorld(model, n)
    obs = world.reset(1)
    with Engine(model, n, workers=0, degrade=False) as engine:
        actions = engine.step(obs).copy()
        before = engine.agent_state()
        engine.reset(np.array([3]))
        bad = world.step(actions).copy()
        bad[17, 1] = 99
        with pytest.raises(ObservationError, match="agent 17, modality 1"):
            engine.step(bad)
        after = engine.agent_state()
        for name in ("prev_action", "started", "actions"):
            np.testing.assert_array_equal(before[name], after[name])
        assert engine.tick == 1
        assert engine._resets_pending                # the reset still belongs to the next tick
