"""pymdp 1.x's grouped log-likelihood tables (engine.model.likelihood_groups)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.model import likelihood_groups as lg
from world.models import random_model, tmaze_model


def _row(groups: lg.LikelihoodGroups, model, g: int, obs: list[int]) -> np.ndarray:  # noqa: ANN001
    r = 0
    for m in groups.mods[g][groups.mods[g] >= 0]:
        r = r * model.num_obs[m] + obs[m]
    cols = groups.cols[g]
    start = groups.offset[g] + r * cols
    return groups.flat[start:start + cols]


def _check_tables(model) -> lg.LikelihoodGroups:  # noqa: ANN001
    groups = lg.likelihood_groups(model)
    rng = np.random.default_rng(0)
    floor = np.log(np.finfo(np.float64).eps)
    seen = sorted(int(m) for m in groups.mods[groups.mods >= 0])
    assert seen == list(range(model.num_modalities))
    for _ in range(20):
        obs = [int(rng.integers(o)) for o in model.num_obs]
        for g in range(groups.cols.shape[0]):
            want = np.zeros(groups.cols[g])
            for m in groups.mods[g][groups.mods[g] >= 0]:
                deps = tuple(groups.deps[g][groups.deps[g] >= 0])
                assert deps == tuple(model.A_factor_list[m])
                with np.errstate(divide="ignore"):
                    want = want + np.maximum(np.log(model.A[m][obs[m]].ravel()), floor)
            np.testing.assert_allclose(_row(groups, model, g, obs), want, rtol=0, atol=1e-14)
    return groups


def test_modalities_over_the_same_factors_share_one_table() -> None:
    groups = _check_tables(tmaze_model())
    assert groups.cols.tolist() == [8]
    assert groups.mods[0].tolist() == [0, 1, 2]


def test_a_table_over_the_cap_starts_a_group_of_its_own(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(lg, "MAX_GROUP_TABLE", 8 * 4 * 3)
    groups = _check_tables(tmaze_model())
    assert groups.cols.tolist() == [8, 8]
    assert groups.mods.tolist() == [[0, 1, -1], [2, -1, -1]]


def test_unsorted_factor_lists_keep_their_order() -> None:
    model = random_model(np.random.default_rng(7), [3, 4, 2], [3, 1, 2], [2, 1, 2],
                         [[2, 0], [1, 0, 2], [2, 0]])
    groups = _check_tables(model)
    assert groups.deps.tolist() == [[2, 0, -1], [1, 0, 2]]
