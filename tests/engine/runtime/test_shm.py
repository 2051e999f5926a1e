"""engine.shm: named segments and semaphores, attach from other processes, crash cleanup."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import numpy as np
import pytest

from engine.errors import ShmError
from engine.runtime.shm import Run, entries_of, run_is_alive, sweep_stale


def _worker_adds_one(run_id: str, shape: tuple[int, ...]) -> None:
    run = Run(run_id, owner=False)
    arr = run.attach_array("beliefs", shape, np.float32)
    arr += 1.0
    run.attach_semaphore("done").release()
    del arr
    run.close()


def _orphan(run_id_queue) -> None:  # noqa: ANN001
    run = Run()
    run.create_array("beliefs", (10,), np.float64)
    run.create_semaphore("go")
    run_id_queue.put(run.run_id)
    signal.pause()


def test_create_attach_from_spawned_worker_and_close_removes_everything() -> None:
    with Run() as run:
        arr = run.create_array("beliefs", (4, 3), np.float32)
        done = run.create_semaphore("done")
        assert len(entries_of([run.run_id])) == 3       # manifest, segment, semaphore
        proc = mp.get_context("spawn").Process(target=_worker_adds_one,
                                               args=(run.run_id, (4, 3)))
        proc.start()
        done.acquire(30)
        proc.join(30)
        assert proc.exitcode == 0
        np.testing.assert_array_equal(arr, np.ones((4, 3), dtype=np.float32))
        run_id = run.run_id
        del arr
    assert entries_of([run_id]) == []


def test_shared_model_arrays_are_read_only() -> None:
    with Run() as run:
        model = run.share_array("A0", np.eye(3))
        with pytest.raises(ValueError):
            model[0, 0] = 2.0
        reader = Run(run.run_id, owner=False)
        view = reader.attach_array("A0", (3, 3), np.float64, readonly=True)
        np.testing.assert_array_equal(view, np.eye(3))
        with pytest.raises((ValueError, TypeError)):
            view[0, 0] = 2.0
        del view, model
        reader.close()


def test_attach_errors_name_the_segment() -> None:
    with Run() as run:
        run.create_array("small", (2,), np.float64)
        reader = Run(run.run_id, owner=False)
        with pytest.raises(ShmError, match="missing"):
            reader.attach_array("missing", (2,), np.float64)
        with pytest.raises(ShmError, match="expected at least"):
            reader.attach_array("small", (100,), np.float64)
        with pytest.raises(ShmError, match="attached, not owned"):
            reader.create_array("x", (1,), np.float64)
        reader.close()


def test_too_large_segment_fails_cleanly_with_the_size() -> None:
    with Run() as run:
        with pytest.raises(ShmError, match=r"cannot allocate [\d,]+ bytes"):
            run.create_array("huge", (1 << 44,), np.float64)
        assert all("huge" not in e for e in entries_of([run.run_id]))


@pytest.mark.alone
def test_sweep_removes_a_killed_owners_run_and_spares_live_ones() -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_orphan, args=(queue,))
    proc.start()
    dead_id = queue.get(timeout=60)
    with Run() as live:
        live.create_array("beliefs", (3,), np.float64)
        assert run_is_alive(dead_id)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert len(entries_of([dead_id])) == 3
        assert not run_is_alive(dead_id)
        removed = sweep_stale()
        assert entries_of([dead_id]) == []
        assert len(removed) >= 3
        assert len(entries_of([live.run_id])) == 2     # the live run is untouched


@pytest.mark.alone
def test_cli_shm_clean_and_list(capsys) -> None:  # noqa: ANN001
    from tools.cli import main

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_orphan, args=(queue,))
    proc.start()
    dead_id = queue.get(timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert main(["shm", "list"]) == 0
    assert f"run {dead_id}: 3 entries, stale" in capsys.readouterr().out
    assert main(["shm", "clean"]) == 0
    assert "removed" in capsys.readouterr().out
    assert entries_of([dead_id]) == []
