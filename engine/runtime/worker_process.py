"""A worker process started from the package's own entry point (:mod:`engine.runtime.worker_main`),
never by importing the user's main script again (docs/architecture.md, "Worker processes")."""

from __future__ import annotations

import os
import pickle
import subprocess
from multiprocessing import spawn
from pathlib import Path

from engine.errors import WorkerError

#: the directory that holds this ``engine`` package: first on the worker's path, so the worker
#: runs the master's copy of agentloop whatever the worker's working directory holds
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from engine.runtime.worker_main import main; main()")


class WorkerProcess:
    """A fresh interpreter running ``worker_main(*args)``; the arguments travel pickled on its
    stdin. Offers what the worker group needs of a process: pid, liveness, kill and join."""

    def __init__(self, args: tuple[object, ...], name: str) -> None:
        # sys.executable, or what multiprocessing.set_executable chose (bytes on POSIX)
        executable = spawn.get_executable()
        if not executable:
            raise WorkerError("cannot start worker processes: this interpreter does not know "
                              "its executable (sys.executable is empty); call "
                              "multiprocessing.set_executable(path) or use workers=0")
        self.name = name
        self._popen = subprocess.Popen([os.fsdecode(executable), "-c", BOOTSTRAP, PACKAGE_ROOT],
                                       stdin=subprocess.PIPE)
        self.pid: int = self._popen.pid
        stdin = self._popen.stdin
        assert stdin is not None
        try:
            stdin.write(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
            stdin.close()
        except BrokenPipeError:
            pass                                   # it died at once: is_alive() says so

    @property
    def exitcode(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal)."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for the process to end (and reap it)."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Release the pipe; reap the process if it has ended."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            try:
                self._popen.stdin.close()
            except BrokenPipeError:
                pass
        self._popen.poll()
