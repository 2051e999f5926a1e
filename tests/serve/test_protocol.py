"""The serve protocol between :class:`Server` (in a thread, on a fake engine) and
:class:`ServeClient`: ticks, refused observations, detach, one client at a time, timeouts,
a closed server, and names."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from engine.errors import ObservationError, ServeError
from engine.runtime.shm import entries_of
from engine.serve import ServeClient, Server
from engine.serve.layout import CLIENT_DETACHED, SERVER_CLOSED, STATUS_SERVER_ERROR
from tests.serve.support import FakeEngine, expected_fake_actions, threaded_server, unique_name


def test_each_step_returns_the_engines_actions_and_tick_info() -> None:
    engine, name = FakeEngine(50), unique_name()
    rng = np.random.default_rng(0)
    with threaded_server(engine, name, budget_s=0.02) as served:
        with ServeClient(name, attach_timeout_s=5) as client:
            assert client.n_agents == 50
            assert client.num_obs == (3, 5) and client.num_actions == (4, 2)
            for tick in range(5):
                obs = np.stack([rng.integers(0, k, 50) for k in (3, 5)], axis=1)
                actions = client.step(obs)
                assert np.array_equal(actions, expected_fake_actions(obs, tick, (4, 2)))
                assert not actions.flags.writeable
                assert client.last_tick is not None and client.last_tick.tick == tick
                assert client.last_tick.deadline_s == pytest.approx(0.02)
                assert not client.stale.any()
            client.obs[:] = 0                     # write the region directly, then step
            assert np.array_equal(client.step(), expected_fake_actions(client.obs, 5, (4, 2)))
        outcome = served["join"]()["outcome"]
    assert outcome.ticks == 6 and outcome.signum is None


def test_refused_observations_raise_and_the_server_goes_on() -> None:
    engine, name = FakeEngine(4), unique_name()
    with threaded_server(engine, name), ServeClient(name, attach_timeout_s=5) as client:
        obs = np.zeros((4, 2), dtype=np.int64)
        obs[2, 1] = 9
        with pytest.raises(ObservationError, match="agent 2, modality 1 out of range: 9"):
            client.step(obs)
        with pytest.raises(ObservationError, match=r"must have shape \(4, 2\) \(agents, "
                                                   r"modalities\), got \(3, 2\)"):
            client.step(obs[:3])
        with pytest.raises(ObservationError, match="integer dtype, got float64"):
            client.step(obs * 1.0)
        obs[2, 1] = 4
        assert np.array_equal(client.step(obs), expected_fake_actions(obs, 0, (4, 2)))


def test_an_engine_failure_reaches_the_client_and_ends_the_server() -> None:
    engine, name = FakeEngine(4), unique_name()

    def broken(obs: np.ndarray, budget_s: float | None = None) -> np.ndarray:
        raise RuntimeError("worker 0 died and could not be respawned")

    engine.step = broken  # type: ignore[method-assign]
    with threaded_server(engine, name) as served, ServeClient(name, attach_timeout_s=5) as c:
        with pytest.raises(ServeError, match="RuntimeError: worker 0 died"):
            c.step(np.zeros((4, 2), dtype=np.int64))
        assert c.header is not None and c.header.status == STATUS_SERVER_ERROR
        assert "worker 0 died" in str(served["join"]()["error"])


def test_a_second_client_is_refused_while_one_is_attached() -> None:
    engine, name = FakeEngine(3), unique_name()
    with threaded_server(engine, name), ServeClient(name, attach_timeout_s=5) as first:
        first.step(np.zeros((3, 2), dtype=np.int64))
        with pytest.raises(ServeError, match=rf"'{name}': another client \(pid \d+\) is "
                                             "attached"):
            ServeClient(name, attach_timeout_s=5).attach()
        first.step(np.zeros((3, 2), dtype=np.int64))          # the first is undisturbed


def test_detach_ends_the_session_and_marks_the_client_gone() -> None:
    engine, name = FakeEngine(3), unique_name()
    with threaded_server(engine, name) as served:
        client = ServeClient(name, attach_timeout_s=5).attach()
        header = served["server"].header
        client.close()
        client.close()                        # twice is fine
        assert served["join"]()["outcome"].ticks == 0
        assert header.client_state == CLIENT_DETACHED
        assert header.server_state == SERVER_CLOSED       # one session per server
        with pytest.raises(ServeError, match="not attached"):
            client.step()


def test_no_server_of_that_name_is_one_line_after_the_timeout() -> None:
    name = unique_name()
    with pytest.raises(ServeError) as caught:
        ServeClient(name, attach_timeout_s=0.1).attach()
    assert str(caught.value) == (f"agentloop serve {name!r}: no server ready "
                                 f"(/agentloop-{name}-serve not found after 0.1 s); start one "
                                 f"with `agentloop serve --name {name}`")


def test_a_server_that_closes_wakes_its_waiting_client() -> None:
    engine, name = FakeEngine(3, step_s=0.3), unique_name()
    with threaded_server(engine, name) as served, ServeClient(name, attach_timeout_s=5) as c:
        engine.stop_requested = 15            # SIGTERM: the tick in progress is answered
        c.step(np.zeros((3, 2), dtype=np.int64))
        assert served["join"]()["outcome"].signum == 15
        served["server"].close()
        with pytest.raises(ServeError, match=r"the server \(pid \d+\) has closed"):
            c.step(np.zeros((3, 2), dtype=np.int64))


def test_timeouts_bound_the_waits_on_both_sides() -> None:
    engine, name = FakeEngine(3, step_s=0.5), unique_name()
    with threaded_server(engine, name, client_timeout_s=0.3) as served:
        with ServeClient(name, attach_timeout_s=5, step_timeout_s=0.15) as client:
            with pytest.raises(ServeError, match="tick 1: no answer within 0.15 s"):
                client.step(np.zeros((3, 2), dtype=np.int64))
            error = served["join"]()["error"]
    assert isinstance(error, ServeError)
    assert str(error).endswith("asked for nothing in 0.3 s")
    with threaded_server(FakeEngine(3), unique_name(), attach_timeout_s=0.2) as served:
        assert str(served["join"]()["error"]) == "no client attached within 0.2 s"


def test_two_servers_cannot_share_a_name() -> None:
    name = unique_name()
    with threaded_server(FakeEngine(3), name):
        with pytest.raises(ServeError, match=f"a server named '{name}' is already running "
                                             f"\\(/agentloop-{name}-manifest exists\\)"):
            Server(FakeEngine(3), name).open()
        assert entries_of([name])                 # the running one is untouched


@pytest.mark.parametrize("name", ["", "a-b", "a/b", "x" * 65, "é"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ServeError, match="use 1 to 64 letters, digits or '_'"):
        ServeClient(name)


def test_a_forked_child_closing_its_copy_leaves_the_session_alone() -> None:
    engine, name = FakeEngine(3), unique_name()
    obs = np.zeros((3, 2), dtype=np.int64)
    with threaded_server(engine, name) as served, ServeClient(name, attach_timeout_s=5) as c:
        c.step(obs)
        pid = os.fork()
        if pid == 0:                                   # the child: let go, then exit
            c.close()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        c.step(obs)
        assert "outcome" not in served and "error" not in served


def test_a_client_dropped_without_close_detaches() -> None:
    engine, name = FakeEngine(3), unique_name()
    with threaded_server(engine, name) as served:
        client = ServeClient(name, attach_timeout_s=5).attach()
        client.step(np.zeros((3, 2), dtype=np.int64))
        del client
        gc.collect()
        assert served["join"]()["outcome"].ticks == 1


def test_an_engine_of_several_populations_is_refused() -> None:
    engine = FakeEngine(3)
    engine.populations = ["a", "b"]                   # type: ignore[attr-defined]
    with pytest.raises(ServeError, match="ABI version 1 serves one population, the engine "
                                         "has 2"):
        Server(engine, unique_name())
