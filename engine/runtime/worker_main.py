"""The entry point of a worker process (:class:`engine.runtime.worker_process.WorkerProcess`):
reads the arguments of :func:`engine.runtime.worker.worker_main`, pickled, from stdin and runs
the worker loop. Only agentloop's own modules are imported here, never the user's script."""

from __future__ import annotations

import pickle
import sys

from engine.runtime.worker import worker_main


def main() -> None:
    """Run one worker with the arguments its master wrote to this process's stdin."""
    args = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    worker_main(*args)


if __name__ == "__main__":
    main()
