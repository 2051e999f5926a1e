"""Learning populations in the engine: each agent's Dirichlet counts in shared memory, equal to
``Agents`` bit for bit with 0, 1 and 2 workers, through quantized beliefs, degradation,
snapshots and a worker killed in a commit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import Engine, GenerativeModel, InferenceConfig
from engine.runtime.agents import Agents
from engine.runtime.faults import ENV
from engine.runtime.population import Population
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from tests.engine.runtime.test_learnt_params import sparse_learning_model
from tests.pymdp_peer import run_side_by_side
from world.models import random_model, tmaze_model
from world.process import ModelProcess

N = 37
TICKS = 12


def _learning_model():
    return random_model(np.random.default_rng(5), [3, 4], [3, 2], [3, 2], with_pA=True,
                        with_pB=True)


CONFIGS = {
    "A": InferenceConfig(learn_A=True, dtype="float64", gamma=4.0),
    "B": InferenceConfig(learn_B=True, dtype="float64", gamma=4.0),
    "AB-after": InferenceConfig(learn_A=True, learn_B=True, lr_pA=0.7, lr_pB=1.3,
                                learn_before_policies=False, dtype="float64", gamma=4.0),
    "gain-only": InferenceConfig(use_param_info_gain=True, dtype="float64", gamma=4.0),
    "subset-float32": InferenceConfig(learn_A=True, learn_B=True, modalities_to_learn=(1,),
                                      factors_to_learn=(0,), use_param_info_gain=True),
}


def _observations(model, ticks: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)
            for _ in range(ticks)]


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_engine_learns_as_agents(name: str, workers: int) -> None:
    model, config = _learning_model(), CONFIGS[name]
    ticks = _observations(model, TICKS, N, seed=3)
    agents = Agents(model, N, config, seed=9)
    with Engine(model, N, workers=workers, config=config, seed=9, chunk=8, beliefs="float",
                degrade=False) as engine:
        for obs in ticks:
            want = np.array(agents.step(obs))
            np.testing.assert_array_equal(engine.step(obs), want)
        pop = engine.population()
        for got, ref in zip(pop.qs, agents.qs, strict=True):
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(pop.q_pi, agents.q_pi)
        for got, ref in zip(pop.pA or [], agents.pA or [], strict=True):
            np.testing.assert_array_equal(got, ref)
        for got, ref in zip(pop.pB or [], agents.pB or [], strict=True):
            np.testing.assert_array_equal(got, ref)
        assert (pop.pA is None) == (agents.pA is None)
        assert (pop.pB is None) == (agents.pB is None)


SPARSE = {
    "sparse-AB": InferenceConfig(learn_A=True, learn_B=True, lr_pA=0.7, dtype="float64",
                                 gamma=4.0, use_param_info_gain=True),
    "sparse-subset": InferenceConfig(learn_A=True, learn_B=True, modalities_to_learn=(0,),
                                     factors_to_learn=(1,), learn_before_policies=False,
                                     dtype="float64", gamma=4.0),
}


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("name", list(SPARSE))
def test_sparse_own_entries_learn_as_agents(name: str, workers: int) -> None:
    """Sparse priors, all or a subset of modalities and factors learnt, each agent storing
    only its own entries: the engine equals ``Agents`` bit for bit, through a reset."""
    model, config = sparse_learning_model(), SPARSE[name]
    ticks = _observations(model, TICKS, N, seed=13)
    agents = Agents(model, N, config, seed=9)
    with Engine(model, N, workers=workers, config=config, seed=9, chunk=8, beliefs="float",
                degrade=False) as engine:
        own = engine.state.spec.params.compact
        assert own[1] < engine.state.spec.params.sizes[1], "fewer counts than the dense row"
        for t, obs in enumerate(ticks):
            if t == 6:
                engine.reset(np.arange(0, N, 4), keep_action=False)
                agents.reset(np.arange(0, N, 4), keep_action=False)
            np.testing.assert_array_equal(engine.step(obs), np.array(agents.step(obs)))
        pop = engine.population()
        np.testing.assert_array_equal(pop.q_pi, agents.q_pi)
        for got, ref in zip(pop.pA + pop.pB, agents.pA + agents.pB, strict=True):
            np.testing.assert_array_equal(got, ref)


def test_snapshot_and_replay_from_carry_own_entries(tmp_path: Path) -> None:
    """Snapshots of a sparse subset-learning population hold each agent's own entries;
    ``replay --from`` restarts from one and ends at the live counts."""
    model, config = sparse_learning_model(), SPARSE["sparse-subset"]
    path = str(tmp_path / "sparse.mcap")
    with Engine(model, N, workers=2, config=config, seed=5, chunk=10, beliefs="float",
                degrade=False) as engine:
        compact = engine.state.spec.params.compact
        recorder = TickRecorder(engine, path, snapshot_every=3)
        for obs in _observations(model, 10, N, seed=14):
            engine.step(obs)
            recorder.record()
        recorder.close()
        live = engine.agent_state()
    assert live["param_pA"].shape == (N, compact[1]) and live["param_pBt"].shape[1] == compact[3]
    result = replay(path, from_tick=7, keep_state=True)
    assert result.ok and result.started_from_snapshot == 6 and result.first_tick == 7, result
    for name, values in live.items():
        np.testing.assert_array_equal(result.final_state[name], values, err_msg=name)


def test_learnt_counts_move_and_stay_apart_per_agent() -> None:
    base = tmaze_model()
    model = GenerativeModel(A=list(base.A), B=list(base.B), C=list(base.C), D=list(base.D),
                            pA=[a * 2.0 + 0.5 * (a > 0) for a in base.A],
                            A_factor_list=base.A_factor_list)
    config = InferenceConfig(learn_A=True, dtype="float64")
    obs = _observations(model, 6, 20, seed=4)
    with Engine(model, 20, workers=0, config=config, seed=1) as engine:
        before = [p.copy() for p in engine.population().pA]
        for o in obs:
            engine.step(o)
        after = engine.population().pA
    moved = [np.abs(a - b).reshape(20, -1).sum(axis=1) for a, b in zip(after, before,
                                                                        strict=True)]
    assert all((m > 0).all() for m in moved)
    assert len({round(float(m), 12) for m in moved[1]}) > 1, "agents learn apart"


def test_snapshot_carries_the_parameters() -> None:
    model, config = _learning_model(), CONFIGS["AB-after"]
    ticks = _observations(model, 8, N, seed=6)
    with Engine(model, N, workers=0, config=config, seed=2, beliefs="float") as first:
        for obs in ticks[:4]:
            first.step(obs)
        saved = first.agent_state()
        assert {"param_A", "param_pA", "param_Bt", "param_pBt"} <= set(saved)
        rest = [np.array(first.step(obs)) for obs in ticks[4:]]
    with Engine(model, N, workers=0, config=config, seed=2, beliefs="float") as second:
        second.load_agent_state(saved, tick=4)
        for obs, want in zip(ticks[4:], rest, strict=True):
            np.testing.assert_array_equal(second.step(obs), want)


def test_stale_agents_learn_nothing() -> None:
    """A replayed tick's stale agents keep their counts; the others learn."""
    model, config = _learning_model(), CONFIGS["A"]
    ticks = _observations(model, 3, N, seed=8)
    with Engine(model, N, workers=0, config=config, seed=2, beliefs="float") as engine:
        engine.step(ticks[0])
        before = engine.population().pA[0].copy()
        stale = np.zeros(N, dtype=bool)
        stale[::3] = True
        engine.step(ticks[1], stale=np.flatnonzero(stale))
        after = engine.population().pA[0]
        np.testing.assert_array_equal(after[stale], before[stale])
        assert (np.abs(after[~stale] - before[~stale]).reshape((~stale).sum(), -1)
                .sum(axis=1) > 0).all()


def test_learning_with_a_plain_population() -> None:
    model = _learning_model()
    plain = InferenceConfig(dtype="float64")
    pops = [Population("plain", model, 10, plain), Population("learn", model, 12, CONFIGS["A"])]
    with Engine(populations=pops, workers=2, seed=4, beliefs="float") as engine:
        for obs in _observations(model, 4, 22, seed=1):
            engine.step({"plain": obs[:10], "learn": obs[10:]})
        assert engine.population("plain").pA is None
        assert engine.population("learn").pA[0].shape[0] == 12


@pytest.mark.parametrize("phase,sparse", [("compute", False), ("commit-qs", False),
                                          ("commit-param_pA", False),
                                          ("commit-param_pBt", True)])
def test_a_worker_dying_in_a_commit_leaves_every_agent_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str, sparse: bool) -> None:
    """A worker killed while stepping or committing a chunk: the master finishes the commit
    from the journal (beliefs and counts together), and the log replays to the same counts
    (also with each agent storing only its own entries of sparse counts)."""
    monkeypatch.setenv(ENV, f"worker=0,tick=2,phase={phase},mode=exit")
    model, config = ((sparse_learning_model(), SPARSE["sparse-subset"]) if sparse
                     else (_learning_model(), CONFIGS["AB-after"]))
    ticks = _observations(model, 40, 60, seed=12)
    path = str(tmp_path / f"{phase}.mcap")
    with Engine(model, 60, workers=2, config=config, seed=3, chunk=10, beliefs="float",
                degrade=False) as engine:
        engine.warm_up(ticks[0])  # compiled in the workers: tick 2 is not the master's
        recorder = TickRecorder(engine, path, snapshot_every=0)
        for done, obs in enumerate(ticks, start=1):
            engine.step(obs, budget_s=1.0)
            recorder.record()
            # the fault fires in the first chunk worker 0 takes from tick 2 on; on a loaded
            # machine worker 1 can take every chunk of a few ticks
            if engine.respawns and done >= 5:
                break
        recorder.close()
        assert engine.respawns == 1
        assert engine.recovered_commits == (1 if phase.startswith("commit-") else 0)
        live = engine.agent_state()
    result = replay(path, keep_state=True)
    assert result.ok and result.ticks == done
    for name, values in live.items():
        np.testing.assert_array_equal(result.final_state[name], values, err_msg=name)


class _EngineSide:
    """An engine's one population, read as ``run_side_by_side`` reads ``Agents``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.policies = engine.checkers[0].policies

    def step(self, obs: np.ndarray) -> np.ndarray:
        return self.engine.step(obs)

    def __getattr__(self, name: str):  # noqa: ANN204  (qs, G, q_pi, pA, pB)
        return getattr(self.engine.population(), name)


@pytest.mark.parametrize("name", ["tmaze-demo", "random-2-factor-AB", "sparse-subset"])
def test_engine_learning_matches_pymdp_over_200_steps(name: str) -> None:
    """pymdp 0.0.7.1's T-maze learning demo (reward likelihood learnt after the action) and a
    random 2-factor model learning A and B: the engine (2 workers) against pymdp, float64."""
    if name == "tmaze-demo":
        model = tmaze_model().with_priors(pA_scale=1.0)
        config = InferenceConfig(learn_A=True, modalities_to_learn=(1,), lr_pA=0.5,
                                 learn_before_policies=False, dtype="float64")
    elif name == "sparse-subset":
        model, config = sparse_learning_model(), SPARSE["sparse-subset"]
    else:
        model = _learning_model()
        config = InferenceConfig(learn_A=True, learn_B=True, lr_pA=0.7, lr_pB=1.3,
                                 dtype="float64")
    rng = np.random.default_rng(17)
    process = ModelProcess(model, 2, rng)

    def observe(t: int, actions: np.ndarray) -> np.ndarray:
        if t:
            process.advance(actions)
        return process.observe()

    with Engine(model, 2, workers=2, config=config, seed=7, beliefs="float",
                degrade=False) as engine:
        gaps = run_side_by_side(model, config, 2, 200, rng, observe=observe,
                                ours=_EngineSide(engine))
    assert gaps.worst() < 1e-10, gaps
    assert gaps.action_mismatches == 0
