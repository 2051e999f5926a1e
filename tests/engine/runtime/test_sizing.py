"""The memory estimate (engine.runtime.sizing): its formulas against what is actually built, and
the refusals it drives in Agents, Engine and the model, made before anything is allocated."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from engine import Agents, Engine, InferenceConfig
from engine.errors import ConfigError
from engine.kernels.numba import scratch
from engine.model.layout import layout_of
from engine.model.limits import MAX_POLICIES, policy_count
from engine.runtime import sizing
from engine.runtime.shared_state import SharedState
from engine.runtime.shm import SHM_DIR, Run, entries_of, leftover_entries
from engine.runtime.sizing import (
    ModelShape,
    check_fits,
    estimate_footprint,
    learnt_bytes,
    population_sizes,
)
from world.foraging import ForagingWorld
from world.grid import GridWorld
from world.models import grid_model, random_model, tmaze_model


def _models() -> list:
    rng = np.random.default_rng(1)
    return [grid_model(3), grid_model(5),
            random_model(rng, [3, 2], [2, 3], [2, 3], A_factor_list=[[0], [0, 1]]),
            random_model(rng, [4], [3, 2], [3, 1], deterministic_B=True),
            grid_model(6, dense=True),                                   # split gain path
            random_model(rng, [5, 3], [6], [3], deterministic_B=True)]   # dense, one factor


@pytest.mark.parametrize("policy_len", [1, 2, 3])
def test_scratch_sizes_from_sizes_match_the_layouts(policy_len: int) -> None:
    """The sizes the estimate uses are the rows the kernels carve (their regions, written out
    here as the kernels' docstrings list them)."""
    for model in _models():
        layout = layout_of(model, InferenceConfig(policy_len=policy_len))
        sizes = scratch.scratch_sizes(layout)
        s, nj, _, horizon, nodes, n_pol, njo, max_u = sizes
        slots = scratch.first_slots(s, n_pol)
        floats = (5 * s + 2 * nj + horizon * s + horizon + nodes + 2 * n_pol + njo
                  + max(max_u, n_pol) + slots * (s + 2 * n_pol) + horizon * max_u + s
                  + scratch.MEMO_SLOTS * (scratch.MEMO_KEY + 1))
        ints = (njo + s + 1 + horizon * s + horizon + s
                + scratch.MEMO_SLOTS * (1 + scratch.MEMO_KEY) + scratch.first_memo_ints(layout))
        children = scratch.dense_children_floats(layout)
        assert children == (0 if layout.gain_path == "sparse" or layout.n_factors > 1
                            else max_u * (s + njo + horizon))
        head_floats, head_ints = scratch.head_scratch(layout)    # the multi-factor walk's
        lanes = (0 if layout.n_factors == 1 else      # the lane state inference's (pymdp0)
                 scratch.LANES * (5 * s + nj + nj + scratch.LANE_SCALARS))
        assert scratch.layout_lane_floats(layout) == lanes
        walk = 0                                    # the lane walk's (dense tables, a tail)
        h, n_head, n_tail, n_table = scratch.head_layout(layout)
        if layout.n_factors > 1 and layout.po_dense.shape[0] and n_head and n_table and (
                layout.gain_cut[0] == 0.0 or n_head * njo <= scratch.LANE_CUT_TABLE):
            rows = (horizon * (s + n_tail + 2 + 2 * n_head + n_table + 1) + 2 * n_head + njo
                    + nodes + n_pol + scratch.LANE_WALK_SCALARS)
            walk = scratch.LANES * rows if scratch.LANES * rows <= scratch.LANE_WALK_FLOATS else 0
        assert scratch.layout_lane_walk_floats(layout) == walk
        assert (scratch.scratch_float_size_of(sizes) + children + head_floats + lanes + walk
                == scratch.scratch_float_size(layout)
                == floats + children + head_floats + lanes + walk)
        assert (scratch.scratch_int_size_of(sizes, layout.n_modalities) + head_ints
                == scratch.scratch_int_size(layout) == ints + head_ints)


@pytest.mark.parametrize("policy_len", [1, 2, 3])
def test_population_sizes_bound_what_is_built(policy_len: int) -> None:
    config = InferenceConfig(policy_len=policy_len)
    for model in _models():
        layout = layout_of(model, config)
        est = population_sizes(model, config)
        actual = layout.nbytes() + layout.tree.policies.nbytes
        assert actual <= est.layout <= 3 * actual + 4096, (est.layout, actual)
        built = 8 * (scratch.scratch_float_size(layout) + scratch.scratch_int_size(layout))
        # the estimate cannot know the information gain's path: it bounds the largest
        assert built <= est.scratch_per_thread <= 2 * built, (est.scratch_per_thread, built)
        with Run() as run:
            state = SharedState.create(run, layout, config, 7, seed=0)
            per_agent = sum(getattr(state, name).nbytes
                            for name in state.spec.per_agent_arrays()) / 7
        assert est.per_agent_shm == per_agent


def test_shape_of_a_model_counts_its_non_zeros() -> None:
    shape = ModelShape.of(grid_model(4))
    assert shape.num_states == (16,) and shape.num_obs == (16, 3)
    assert shape.B_nonzeros == 16 * 5
    layout = layout_of(grid_model(4), InferenceConfig())
    assert shape.po_nonzeros == layout.po_idx.size
    assert ModelShape.of(grid_model(4)) == shape


@pytest.mark.parametrize(("world", "size"), [(GridWorld, 6), (ForagingWorld, 5)])
def test_world_model_shapes_match_the_built_models(world: type, size: int) -> None:
    declared = world.model_shape(size)
    built = ModelShape.of(world(size=size, n_agents=3).model())
    for field in ("num_states", "num_obs", "num_controls", "A_factor_list", "control_fac_idx"):
        assert getattr(declared, field) == getattr(built, field), field
    assert declared.B_nonzeros >= built.B_nonzeros and declared.po_nonzeros >= built.po_nonzeros
    assert not declared.built and declared.model_bytes() == built.model_bytes()


def test_engine_shared_memory_matches_the_estimate() -> None:
    model = grid_model(5)
    footprint = estimate_footprint(model, InferenceConfig(), 5000, 0)
    with Engine(model, 5000, workers=0) as engine:
        used = sum((SHM_DIR / e).stat().st_size for e in entries_of([engine.run_id])
                   if not e.startswith("sem.") and not e.endswith("manifest"))
    assert 0.9 * footprint.shm_bytes <= used <= 1.1 * footprint.shm_bytes, (used, footprint)


def test_policy_counts_are_computed_without_enumerating() -> None:
    assert policy_count((5,), (0,), 8) == 5**8
    assert policy_count((5,), (0,), 9) == MAX_POLICIES + 1
    assert policy_count((5,), (0,), 10**9) == MAX_POLICIES + 1
    assert policy_count((1, 1), (0, 1), 60) == 1
    assert policy_count((4, 3), (1,), 2) == 9


def test_policy_explosions_are_refused_before_enumeration() -> None:
    model = grid_model(3)
    began = time.monotonic()
    with pytest.raises(ConfigError, match="policy_len 12 gives 244,140,625 policies"):
        model.policies_for(12)
    with pytest.raises(ConfigError, match="policy_len 50 gives about 10\\^35 policies"):
        Agents(model, 5, InferenceConfig(policy_len=50))
    with pytest.raises(ConfigError, match="more than agentloop plans ahead"):
        Engine(model, 5, workers=0, config=InferenceConfig(policy_len=100))
    assert time.monotonic() - began < 2


def test_oversized_populations_are_refused_before_anything_is_built() -> None:
    model = grid_model(3)

    def ours() -> list[str]:
        return [run for run in leftover_entries() if run.startswith(f"{os.getpid()}x")]

    before = ours()
    with pytest.raises(ConfigError, match=r"Agents: 2,000,000,000 agents need ~[\d,]+ MB of "
                                          r"memory \(per-agent state ~[\d,]+ MB\), more than "
                                          r"the [\d,]+ MB available"):
        Agents(model, 2_000_000_000)
    with pytest.raises(ConfigError, match=r"Engine: 2,000,000,000 agents need ~[\d,]+ MB of "
                                          r"(shared )?memory"):
        Engine(model, 2_000_000_000, workers=2)
    assert ours() == before


def test_check_fits_names_both_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizing, "available", lambda: (1000 * sizing.MB, 100 * sizing.MB))
    check_fits(sizing.Footprint(800 * sizing.MB, 50 * sizing.MB), "these agents")
    with pytest.raises(ConfigError, match="these agents need ~200 MB of shared memory in "
                                          "/dev/shm, more than the 100 MB free there"):
        check_fits(sizing.Footprint(10 * sizing.MB, 200 * sizing.MB), "these agents")
    with pytest.raises(ConfigError, match=r"these agents need ~950 MB of memory \(scratch "
                                          r"~900 MB\), more than the 900 MB available \(90% of "
                                          r"1,000 MB\)"):
        check_fits(sizing.Footprint(900 * sizing.MB, 50 * sizing.MB,
                                    (("scratch", 900 * sizing.MB),)), "these agents")


def test_learning_counts_each_agents_own_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A learning population's estimate adds each agent's own parameter entries (what
    ``Engine`` creates), and one it pushes past /dev/shm is refused in one line with both
    numbers before anything is built."""
    model = tmaze_model().with_priors(pA_scale=1.0)
    config = InferenceConfig(learn_A=True, modalities_to_learn=(1,))
    plain = estimate_footprint(model, InferenceConfig(), 5000, 0)
    learning = estimate_footprint(model, config, 5000, 0)
    assert learnt_bytes(model, config) == 16 * np.count_nonzero(model.A[1])
    assert learning.shm_bytes - plain.shm_bytes >= 5000 * learnt_bytes(model, config)
    with Engine(model, 5000, workers=0, config=config) as engine:
        assert engine.state.spec.params.bytes_per_agent() == learnt_bytes(model, config)
        used = sum((SHM_DIR / e).stat().st_size for e in entries_of([engine.run_id])
                   if not e.startswith("sem.") and not e.endswith("manifest"))
    assert 0.9 * learning.shm_bytes <= used <= 1.1 * learning.shm_bytes, (used, learning)
    n = 400_000
    low = estimate_footprint(model, InferenceConfig(), n, 0).shm_bytes
    high = estimate_footprint(model, config, n, 0).shm_bytes
    assert high - low >= n * learnt_bytes(model, config)
    monkeypatch.setattr(sizing, "available", lambda: (1 << 50, (low + high) // 2))
    with pytest.raises(ConfigError, match=r"^Engine: 400,000 agents need ~[\d,]+ MB of shared "
                                          r"memory in /dev/shm, more than the [\d,]+ MB free "
                                          r"there$"):
        Engine(model, n, workers=0, config=config)
