"""A run is alive while its owner holds the lock on its manifest, whatever its pid says: runs in
another PID namespace (containers sharing /dev/shm) are left alone; another user's leftovers
are skipped with a warning; a full /dev/shm names the segment."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import posix_ipc
import pytest

from engine.errors import ShmError
from engine.runtime.shm import Run, entries_of, run_is_alive, sweep_stale

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, PYTHONPATH=str(REPO))

#: a run in a child process: prints its id, holds it until stdin closes (or it is killed)
HOLDER = textwrap.dedent("""
    import sys
    import numpy as np
    from engine.runtime.shm import Run
    run = Run(sys.argv[1] if len(sys.argv) > 1 else None)
    run.create_array("beliefs", (3,), np.float64)
    run.create_semaphore("go")
    print(run.run_id, flush=True)
    sys.stdin.read()
    run.close()
""")


def _holder(*prefix: str, run_id: str | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HOLDER, *([run_id] if run_id else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, f"the holder did not start (exit {proc.poll()})"
    return proc, line


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _works(*command: str) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools", *args], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=120, user=user, group=user)


@pytest.mark.parametrize("recorded", ["dead", "unrelated"])
def test_a_locked_run_is_live_whatever_its_recorded_pid(recorded: str) -> None:
    """The namespace case without a namespace: the pid in the run id is dead, or belongs to an
    unrelated process (pid 1), as a run of another PID namespace looks from here."""
    pid = _dead_pid() if recorded == "dead" else 1
    run = Run(f"{pid}x{secrets.token_hex(4)}")
    try:
        run.create_array("beliefs", (3,), np.float64)
        run.create_semaphore("go")
        before = sorted(entries_of([run.run_id]))
        assert run_is_alive(run.run_id)
        removed = sweep_stale()
        assert not [e for e in removed if run.run_id in e]
        assert sorted(entries_of([run.run_id])) == before
        listed = _cli("shm", "list")
        assert f"run {run.run_id}: {len(before)} entries, live" in listed.stdout, listed
    finally:
        run.close()
    assert entries_of([run.run_id]) == []


@pytest.mark.alone
def test_an_unlocked_run_is_stale_even_when_its_recorded_pid_lives() -> None:
    """A run whose owner was killed is swept although its id names a live process (ours)."""
    proc, run_id = _holder(run_id=f"{os.getpid()}x{secrets.token_hex(4)}")
    proc.kill()
    proc.wait()
    assert len(entries_of([run_id])) == 3
    assert not run_is_alive(run_id)
    removed = sweep_stale()
    assert entries_of([run_id]) == [] and len([e for e in removed if run_id in e]) == 3


@pytest.mark.skipif(not _works("unshare", "-p", "-f", "--mount-proc", "true"),
                    reason="unshare -p -f --mount-proc is not allowed here")
def test_a_run_in_another_pid_namespace_survives_sweeps_and_shm_clean() -> None:
    proc, run_id = _holder("unshare", "-p", "-f", "--mount-proc")
    try:
        before = sorted(entries_of([run_id]))
        assert len(before) == 3
        assert run_is_alive(run_id)
        sweep_stale()
        clean = _cli("shm", "clean")
        assert clean.returncode == 0, clean.stderr
        listed = _cli("shm", "list")
        assert f"run {run_id}: 3 entries, live" in listed.stdout, listed
        assert sorted(entries_of([run_id])) == before
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    assert entries_of([run_id]) == []


# ------------------------------------------------------------------ another user's leftovers
def _stale_run() -> str:
    proc, run_id = _holder()
    proc.kill()
    proc.wait()
    return run_id


def _refuse(run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``run_id``'s entries behave as another user's: EACCES on open and unlink."""
    real_open, real_shm, real_sem = (os.open, posix_ipc.unlink_shared_memory,
                                     posix_ipc.unlink_semaphore)

    def guarded(real):  # noqa: ANN001, ANN202
        def call(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if run_id in str(name):
                if real is real_open:
                    raise PermissionError(errno.EACCES, "Permission denied", str(name))
                raise posix_ipc.PermissionsError("Permission denied")
            return real(name, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", guarded(real_open))
    monkeypatch.setattr(posix_ipc, "unlink_shared_memory", guarded(real_shm))
    monkeypatch.setattr(posix_ipc, "unlink_semaphore", guarded(real_sem))


@pytest.mark.alone
def test_another_users_leftover_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from engine import Engine
    from tools.cli import main
    from world.models import grid_model

    run_id = _stale_run()
    try:
        with monkeypatch.context() as patch:
            _refuse(run_id, patch)
            with pytest.warns(RuntimeWarning, match=f"{run_id}.*another user"):
                removed = sweep_stale()
            assert not [e for e in removed if run_id in e]
            with pytest.warns(RuntimeWarning, match=run_id):
                with Engine(grid_model(3), 4, workers=0) as engine:
                    engine.step(np.zeros((4, 2), dtype=np.int64))
            assert main(["shm", "clean"]) == 0
            out, err = capsys.readouterr()
            assert run_id in err and "another user" in err
            assert main(["shm", "list"]) == 0
            assert f"run {run_id}: 3 entries, another user's" in capsys.readouterr().out
            assert len(entries_of([run_id])) == 3
    finally:
        sweep_stale()
    assert entries_of([run_id]) == []


def _nobody_can_import() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run([sys.executable, "-c", "import engine.runtime.shm"], env=ENV,
                              cwd=REPO, user=65534, group=65534, capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.alone
@pytest.mark.skipif(not _nobody_can_import(),
                    reason="needs root, to look at root's leftover as user nobody")
def test_shm_clean_as_another_user_skips_what_it_may_not_remove() -> None:
    run_id = _stale_run()
    try:
        clean = _cli("shm", "clean", user=65534)
        assert clean.returncode == 0, clean.stderr
        assert run_id in clean.stderr and "another user" in clean.stderr
        assert "Traceback" not in clean.stderr
        listed = _cli("shm", "list", user=65534)
        assert listed.returncode == 0 and f"run {run_id}: 3 entries, another user's" in \
            listed.stdout, listed
        assert len(entries_of([run_id])) == 3
    finally:
        sweep_stale()
    assert entries_of([run_id]) == []


@pytest.mark.alone
def test_a_fifo_planted_as_a_manifest_does_not_hang_the_sweep() -> None:
    run_id = f"{_dead_pid()}x{secrets.token_hex(4)}"
    fifo = Path("/dev/shm") / f"agentloop-{run_id}-manifest"
    os.mkfifo(fifo, 0o600)
    try:
        with pytest.warns(RuntimeWarning, match=f"{run_id}.*not made by agentloop"):
            sweep_stale()
        assert fifo.exists()
    finally:
        fifo.unlink()


# ------------------------------------------------------------------ a full /dev/shm
def test_no_space_for_a_new_name_names_the_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    real = posix_ipc.SharedMemory

    def full(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name.endswith("-beliefs"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, *args, **kwargs)

    with Run() as run:
        monkeypatch.setattr(posix_ipc, "SharedMemory", full)
        with pytest.raises(ShmError, match=rf"{run.run_id}-beliefs: cannot create .*"
                                           r"No space left on device.*inodes"):
            run.create_array("beliefs", (3,), np.float64)
        monkeypatch.setattr(posix_ipc, "Semaphore", _raise_enospc)
        with pytest.raises(ShmError, match=rf"{run.run_id}-go: cannot create"):
            run.create_semaphore("go")


def _raise_enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


FULL_SHM = textwrap.dedent("""
    import os
    import numpy as np
    from engine import Engine
    from engine.errors import ShmError
    from engine.runtime.shm import Run
    from world.models import grid_model
    for what in ("engine", "semaphore"):
        try:
            if what == "engine":
                Engine(grid_model(3), 10, workers=0).start()
            else:
                with Run() as run:
                    for i in range(10):
                        run.create_semaphore(f"go-{i}")
        except ShmError as exc:
            print(what, exc)
    print("left", len(os.listdir("/dev/shm")))
""")


@pytest.mark.skipif(not _works("unshare", "-m", "true"),
                    reason="unshare -m (a private /dev/shm) is not allowed here")
def test_out_of_inodes_in_dev_shm_names_the_segment() -> None:
    """In a private mount namespace, a /dev/shm of 6 inodes: the engine's start fails with
    ShmError naming the segment it could not create, and removes what it had made."""
    script = (f"mount -t tmpfs -o nr_inodes=6,size=4m tmpfs /dev/shm && "
              f"exec {sys.executable} -c '{FULL_SHM}'")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("engine agentloop-") and "cannot create" in lines[0]
    assert "No space left on device" in lines[0] and "inodes" in lines[0], lines
    assert lines[1].startswith("semaphore agentloop-") and "-go-" in lines[1], lines
    assert lines[2] == "left 0"
