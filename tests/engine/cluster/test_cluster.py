"""The Ray cluster engine: shards on two (local) nodes give a single engine's results, a late
shard's tick is discarded, a killed shard is restarted from its checkpoint, nothing leaks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import engine.cluster.ray_connection  # noqa: E402
from engine import AgentloopError, ConfigError, Engine, InferenceConfig  # noqa: E402
from engine.cluster.coordinator import ClusterEngine  # noqa: E402
from engine.cluster.ray_connection import connect  # noqa: E402
from engine.cluster.recorder import ClusterRecorder  # noqa: E402
from engine.cluster.sharding import shard_bounds, shard_slices  # noqa: E402
from engine.factory import make_engine  # noqa: E402
from engine.runtime.degrade import ROTATING_FRACTION, SHORTER_HORIZON  # noqa: E402
from engine.runtime.population import Population  # noqa: E402
from engine.runtime.shm import entries_of  # noqa: E402
from engine.ticklog.replay import replay  # noqa: E402
from tests.logs import expect_log  # noqa: E402
from world.models import grid_model, random_model  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
N = 200
CONFIG = InferenceConfig(policy_len=2, action_selection="stochastic", alpha=4.0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLIENT_PORT = _free_port()          # the head's Ray Client server (ray:// addresses)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two local nodes of one CPU each; the driver (this process) joins them. The head also
    serves Ray Client on CLIENT_PORT, for the ray:// test."""
    _compile_what_a_shard_compiles([Population("main", grid_model(5), N)])
    _compile_what_a_shard_compiles(_populations())
    nodes = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "include_dashboard": False,
                                    "ray_client_server_port": CLIENT_PORT})
    nodes.add_node(num_cpus=1)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(address=nodes.address, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        for sig, handler in handlers.items():      # ray.init's turn a later SIGTERM into
            signal.signal(sig, handler)            # SystemExit inside whatever test runs


def _compile_what_a_shard_compiles(populations: list[Population]) -> None:
    """Compile here, once, the kernels a shard actor compiles on its first step (a local
    engine of one thread over its slice of each population): the two actors then load them
    from Numba's cache instead of compiling them side by side, one per core, cold."""
    first = shard_slices(populations, 2, 25)[0]
    parts = [Population(p.name, p.model, hi - lo, p.config)
             for p, (lo, hi) in zip(populations, first, strict=True)]
    with Engine(populations=parts, workers=0, threads=1, config=CONFIG, seed=7, chunk=25,
                degrade=False) as engine:
        obs = [np.zeros((p.n_agents, len(p.model.num_obs)), dtype=np.int64) for p in parts]
        engine.step(obs if len(obs) > 1 else obs[0])


def _observations(model, ticks: int, seed: int) -> list[np.ndarray]:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return [np.stack([rng.integers(0, o, size=N) for o in model.num_obs], axis=1)
            for _ in range(ticks)]


def _engine(model, **kwargs) -> ClusterEngine:  # noqa: ANN001, ANN003
    return ClusterEngine(model, N, shards=2, workers_per_shard=0, config=CONFIG, seed=7,
                         chunk=25, **kwargs)


def test_shard_bounds() -> None:
    assert shard_bounds(200, 2, 25) == [(0, 100), (100, 200)]
    assert shard_bounds(1000, 3, 64) == [(0, 384), (384, 640), (640, 1000)]
    assert shard_bounds(200, 2, 1024) == [(0, 100), (100, 200)]     # too small to align
    with pytest.raises(ConfigError):
        shard_bounds(1, 2, 8)


def test_make_engine_without_a_cluster_is_an_engine() -> None:
    engine = make_engine(grid_model(3), 10, workers=0)
    assert type(engine) is Engine
    with pytest.raises(ConfigError):
        make_engine(grid_model(3), 10, shards=2)


class _FlakyRay:
    """Stands in for ``ray``: the first ``failures`` calls of init fail as Ray Client does when
    its per-driver server does not start."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def is_initialized(self) -> bool:
        return False

    def init(self, address: str, **kwargs) -> str:  # noqa: ANN003
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionAbortedError("Starting Ray client server failed")
        return f"connected to {address}"


def test_a_ray_client_connection_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.cluster.ray_connection, "CLIENT_CONNECT_BACKOFF_S", 0.0)
    flaky = _FlakyRay(failures=2)
    monkeypatch.setattr(engine.cluster.ray_connection, "_ray", lambda: flaky)
    with expect_log("agentloop.cluster", "attempt [12] of 3\\), retrying"):
        assert connect("ray://head:10001") == "connected to ray://head:10001"
    assert flaky.calls == 3
    hopeless = _FlakyRay(failures=5)
    monkeypatch.setattr(engine.cluster.ray_connection, "_ray", lambda: hopeless)
    with expect_log("agentloop.cluster", "retrying"), \
            pytest.raises(ConfigError, match="head:10001.*3 attempts"):
        connect("ray://head:10001")
    driver = _FlakyRay(failures=1)                   # only Ray Client addresses are retried
    monkeypatch.setattr(engine.cluster.ray_connection, "_ray", lambda: driver)
    with pytest.raises(ConnectionAbortedError):
        connect("head:6379")


def test_shards_on_two_nodes_match_a_single_engine(cluster: Cluster) -> None:
    """Global agent ids: every action (and the final state) equals Engine(workers=0)'s, with
    and without a budget, and at degraded levels."""
    model = grid_model(5)
    levels = [0, 0, SHORTER_HORIZON, 0, ROTATING_FRACTION, ROTATING_FRACTION, 0, 0, 1, 0]
    with Engine(model, N, workers=0, config=CONFIG, seed=7, chunk=25, degrade=False) as single:
        expected, expected_stale = [], []
        for obs, level in zip(_observations(model, 10, 3), levels, strict=True):
            expected.append(np.array(single.step(obs, level=level)))
            expected_stale.append(np.array(single.stale))   # the rotating half at level 3
        final = single.agent_state()
    with _engine(model, degrade=False) as engine:
        infos = engine.shard_infos()
        assert len({info["node_id"] for info in infos}) == 2
        assert engine.placement_strategy == "STRICT_SPREAD"
        for k, obs in enumerate(_observations(model, 10, 3)):
            budget = 30.0 if k % 2 else None        # budgeted ticks keep an undo copy
            actions = engine.step(obs, budget_s=budget, level=levels[k])
            np.testing.assert_array_equal(actions, expected[k])
            np.testing.assert_array_equal(engine.stale, expected_stale[k])
        for bad in ({"budget_s": "0.1"}, {"budget_s": float("nan")}, {"level": 2.5}):
            with pytest.raises(ConfigError, match="ClusterEngine.step: (budget_s|level) must"):
                engine.step(obs, **bad)             # refused before any shard is asked
        assert engine.tick == 10
        state = engine.agent_state()
        for name in Engine.STATE_ARRAYS:
            np.testing.assert_array_equal(state[name], final[name])
        run_ids = [info["run_id"] for info in infos]
    assert entries_of(run_ids) == []


RAY_CLIENT_RUN = """
import sys
import numpy as np
from engine import Engine, make_engine
from tests.engine.cluster.test_cluster import CONFIG, N, _observations
from world.models import grid_model

model = grid_model(5)
with Engine(model, N, workers=0, config=CONFIG, seed=7, chunk=25, degrade=False) as single:
    expected = [np.array(single.step(obs)) for obs in _observations(model, 4, 5)]
with make_engine(model, N, cluster=sys.argv[1], shards=2, workers=0, config=CONFIG, seed=7,
                 chunk=25, degrade=False) as engine:
    for obs, want in zip(_observations(model, 4, 5), expected, strict=True):
        np.testing.assert_array_equal(engine.step(obs, budget_s=30.0), want)
print("same actions through", type(engine).__name__)
"""


def test_a_ray_client_address_gives_the_same_actions(cluster: Cluster) -> None:
    """make_engine(..., cluster="ray://host:port") connects through Ray Client (a driver of its
    own, hence a child process) and gives a single engine's actions."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", RAY_CLIENT_RUN,
                           f"ray://127.0.0.1:{CLIENT_PORT}"], capture_output=True, text=True,
                          timeout=240, env=env, cwd=REPO)
    logs = Path(cluster.head_node.get_logs_dir_path())
    server_logs = "".join(f"\n--- {log.name}\n{log.read_text()[-1500:]}"
                          for log in sorted(logs.glob("ray_client_server*.err")))
    assert done.returncode == 0, done.stderr[-3000:] + server_logs
    assert "same actions through ClusterEngine" in done.stdout


def test_a_late_shard_is_stale_and_its_tick_discarded(cluster: Cluster) -> None:
    """A shard that answers after the deadline: its agents keep their actions and are not
    stepped, exactly as a single engine with that stale set forced."""
    model = grid_model(5)
    observations = _observations(model, 6, 4)
    stale_sets, got = [], []
    with _engine(model, degrade=False, grace_s=0.0) as engine:
        for k, obs in enumerate(observations):
            if k == 2:
                ray.get(engine.actor(1).set_delay.remote(1.5))
            got.append(np.array(engine.step(obs, budget_s=0.5)))
            stale_sets.append(np.flatnonzero(engine.stale))
            reasons = engine.last_tick.stale_reasons
            assert reasons is not None and reasons.total == len(stale_sets[-1])
            if k == 2:
                assert engine.last_shards[1].status == "late"
                assert set(stale_sets[-1]) >= set(range(100, 200))
                assert reasons.deadline >= 100 and reasons.worker == 0   # late: the deadline
        time.sleep(1.0)                             # let the late calls finish on the shard
        final = engine.agent_state()
        run_ids = [info["run_id"] for info in engine.shard_infos()]
    with Engine(model, N, workers=0, config=CONFIG, seed=7, chunk=25, degrade=False) as single:
        for obs, stale, actions in zip(observations, stale_sets, got, strict=True):
            np.testing.assert_array_equal(single.step(obs, level=0, stale=stale), actions)
        for name in Engine.STATE_ARRAYS:
            np.testing.assert_array_equal(single.agent_state()[name], final[name])
    assert entries_of(run_ids) == []


def test_a_killed_shard_restarts_from_its_checkpoint(cluster: Cluster, tmp_path: Path) -> None:
    """Ray restarts the actor, the coordinator restores its last checkpoint, its agents are
    stale meanwhile (recorded), the other shard never stops, and the log replays from the
    resync snapshot written where the shard resumed."""
    model = grid_model(5)
    path = str(tmp_path / "cluster.mcap")
    rng = np.random.default_rng(5)
    stale_ticks: list[int] = []
    run_ids = set()
    with _engine(model, checkpoint_every=3, max_restarts=2) as engine:
        run_ids |= {info["run_id"] for info in engine.shard_infos()}
        recorder = ClusterRecorder(engine, path, snapshot_every=0)
        resumed = None
        for k in range(600):                       # ticks until resumed (about 10 s)
            if k == 7:
                ray.kill(engine.actor(1), no_restart=False)
            obs = np.stack([rng.integers(0, o, size=N) for o in model.num_obs], axis=1)
            engine.step(obs)
            recorder.record()
            stale = engine.stale
            assert not stale[:100].any()           # the live shard never stops
            reasons = engine.last_tick.stale_reasons
            assert reasons is not None and reasons.total == int(stale.sum())
            if stale[100:].all():
                stale_ticks.append(k)
                assert reasons.worker == 100 and reasons.deadline == 0   # a shard lost
            if engine.events and engine.events[-1].kind == "restored" \
                    and engine.events[-1].tick == k:
                resumed = k                         # the shard steps again from this tick
            if engine.shard_status[1] != "ok":
                time.sleep(0.1)
            elif resumed is not None and k >= resumed + 4 \
                    and engine.shard_infos()[1]["restarted"]:
                break
        recorder.close()
        assert resumed is not None, engine.events
        # a call can fail before the kill lands and the restore reach the old actor: then
        # the restarted one refuses to step and is restored again (down, restored twice)
        kinds = [e.kind for e in engine.events]
        assert kinds[0] == "down" and kinds[-1] == "restored", kinds
        assert set(kinds) == {"down", "restored"} and engine.restarts == kinds.count("down")
        assert stale_ticks and min(stale_ticks) >= 7 and max(stale_ticks) < resumed
        assert not engine.stale.any()
        infos = engine.shard_infos()
        assert infos[1]["restarted"] and infos[1]["ready"]
        run_ids |= {info["run_id"] for info in infos}
    result = replay(path, from_tick=resumed)
    assert result.ok, result.divergence and result.divergence.report()
    assert result.started_from_snapshot == resumed - 1 and result.first_tick == resumed
    assert entries_of(sorted(run_ids)) == []


def test_a_cluster_log_rotates_into_a_set_that_replays(cluster: Cluster, tmp_path: Path) -> None:
    """The coordinator's log under a size cap: several files, each opening with the agents'
    state, replayed as one (and from the last file alone) with every action reproduced."""
    model = grid_model(5)
    path = str(tmp_path / "cluster.mcap")
    with _engine(model) as engine:
        recorder = ClusterRecorder(engine, path, snapshot_every=10, max_bytes=24_000)
        for obs in _observations(model, 40, seed=3):
            engine.step(obs)
            recorder.record()
        recorder.close()
    files = recorder.writer.files
    assert len(files) >= 3 and recorder.writer.still_at_path()
    result = replay(path)
    assert result.ok and result.ticks == 40 and result.files == tuple(files)
    last = replay(files[-1])
    assert last.ok and last.started_mid_run and last.last_tick == 39


def test_make_engine_cluster_and_the_run_command(cluster: Cluster, tmp_path: Path) -> None:
    """``make_engine(..., cluster=address)`` and ``agentloop run --cluster`` reach the same
    engine (``Engine(..., cluster=...)`` says to use make_engine); a cluster run's tick log
    replays."""
    from tools.run import RunOptions, run

    model = grid_model(5)
    engine = make_engine(model, N, workers=0, config=CONFIG, seed=7, chunk=25,
                         cluster=cluster.address, shards=2)
    assert isinstance(engine, ClusterEngine)
    with pytest.raises(ConfigError, match="make_engine"):
        Engine(model, N, workers=0, cluster=cluster.address)
    path = str(tmp_path / "cluster.mcap")
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        code = run(RunOptions(world="grid", size=5, agents=N, hz=50.0, ticks=10, duration=None,
                              workers=0, backend="numba", policy_len=1, seed=3, log=path,
                              cluster=cluster.address, shards=2), out=stream, err=stream)
    assert code == 0, out.read_text()
    assert "on the Ray cluster" in out.read_text()
    result = replay(path)
    assert result.ok and result.ticks == 10


def _populations() -> list[Population]:
    """Three populations: the test's grid model, a random model with its own config, and
    a population of one agent (smaller than the shard count)."""
    return [Population("walkers", grid_model(5), N),
            Population("randoms", random_model(np.random.default_rng(3), num_obs=(5, 2),
                                               num_states=(4, 3), num_controls=(2, 3)), 60,
                       InferenceConfig(policy_len=1, action_selection="deterministic")),
            Population("loner", grid_model(3), 1)]


def _population_observations(pops: list[Population], ticks: int, seed: int
                             ) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[np.stack([rng.integers(0, o, size=p.n_agents) for o in p.model.num_obs], axis=1)
             for p in pops] for _ in range(ticks)]


def test_several_populations_match_a_single_engine(cluster: Cluster, tmp_path: Path) -> None:
    """Every shard hosts a slice of each population; actions, stale flags, resets and the
    final state equal one engine with the same populations, at every degradation level."""
    pops = _populations()
    names = [p.name for p in pops]
    ticks = _population_observations(pops, 9, 8)
    levels = [0, SHORTER_HORIZON, 0, ROTATING_FRACTION, ROTATING_FRACTION, 0, 1, 0, 0]
    kwargs = dict(config=CONFIG, seed=7, chunk=25, degrade=False)
    with Engine(populations=pops, workers=0, **kwargs) as single:
        expected = []
        for k, (obs, level) in enumerate(zip(ticks, levels, strict=True)):
            if k == 5:
                single.reset([3, 55], population="randoms")
            expected.append(([np.array(a) for a in single.step(obs, level=level)],
                             np.array(single.stale)))
        final = {name: single.agent_state(name) for name in names}
    with ClusterEngine(populations=pops, shards=2, workers_per_shard=0, **kwargs) as engine:
        assert engine.slices[1][2] == (1, 1)            # the loner lives on shard 0 only
        for k, (obs, level) in enumerate(zip(ticks, levels, strict=True)):
            if k == 5:
                engine.reset([3, 55], population="randoms")
            budget = 30.0 if k % 2 else None
            if k % 3 == 0:                              # a dict in, a dict out
                got = engine.step(dict(zip(names, obs, strict=True)), budget_s=budget,
                                  level=level)
                got = [got[name] for name in names]
            else:
                got = engine.step(obs, budget_s=budget, level=level)
            for mine, theirs in zip(got, expected[k][0], strict=True):
                np.testing.assert_array_equal(mine, theirs)
            np.testing.assert_array_equal(engine.stale, expected[k][1])
        for name in names:
            state = engine.agent_state(name)
            for array in Engine.STATE_ARRAYS:
                np.testing.assert_array_equal(state[array], final[name][array])
        with pytest.raises(AgentloopError, match="population=..."):
            engine.agent_state()
        with pytest.raises(ConfigError, match="one population"):
            ClusterRecorder(engine, str(tmp_path / "log.mcap"))
        # a population's state loaded back: the next tick equals the single engine's
        walkers = final["walkers"]
        engine.load_agent_state({**walkers, "actions": walkers["actions"]}, len(ticks),
                                population=0)
        after = engine.step(ticks[0], level=0)
        run_ids = [info["run_id"] for info in engine.shard_infos()]
    with Engine(populations=pops, workers=0, **kwargs) as single:
        for name in names[1:]:
            single.load_agent_state(final[name], len(ticks), population=name)
        single.load_agent_state(walkers, len(ticks), population="walkers")
        # the cluster's other populations kept their state: the single engine matches it
        for mine, theirs in zip(after, single.step(ticks[0], level=0), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert entries_of(run_ids) == []


def test_a_killed_shard_of_several_populations_is_restored(cluster: Cluster) -> None:
    """A restarted shard gets its slices of every population back from the checkpoint."""
    pops = _populations()
    rng = np.random.default_rng(2)
    with ClusterEngine(populations=pops, shards=2, workers_per_shard=0, config=CONFIG, seed=7,
                       chunk=25, checkpoint_every=2, max_restarts=2) as engine:
        run_ids = {info["run_id"] for info in engine.shard_infos()}
        restored = None
        for k in range(600):
            if k == 3:
                ray.kill(engine.actor(1), no_restart=False)
            obs = [np.stack([rng.integers(0, o, size=p.n_agents) for o in p.model.num_obs],
                            axis=1) for p in pops]
            engine.step(obs)
            down = engine.shard_status[1] != "ok"
            for state, (lo, hi) in zip(engine.states, engine.slices[1], strict=True):
                assert state.stale[lo:hi].all() or not down
            if engine.events and engine.events[-1].kind == "restored":
                restored = k
            if down:
                time.sleep(0.1)
            elif restored is not None and k >= restored + 2:
                break
        assert restored is not None, engine.events
        assert not engine.stale.any()
        run_ids |= {info["run_id"] for info in engine.shard_infos()}
    assert entries_of(sorted(run_ids)) == []
