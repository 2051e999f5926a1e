"""The start-up line of ``run``, ``soak`` and ``serve``, and a progress line while a cold start
compiles the kernels (minutes on a first run; later runs load them from Numba's cache)."""

from __future__ import annotations

import threading
import time
from typing import TextIO

#: printed before the engine starts
STARTING = ("starting (the first run on a machine compiles the kernels, about a minute on 2 "
            "cores; later runs load them in seconds) ...")
#: seconds between progress lines
EVERY_S = 15.0


class StartupProgress:
    """Prints ``still starting after N s`` every ``every_s`` seconds from :meth:`start` until
    :meth:`stop` (idempotent), from a daemon thread; nothing when start-up is quick."""

    def __init__(self, out: TextIO, every_s: float = EVERY_S) -> None:
        self.out = out
        self.every_s = every_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StartupProgress:
        began = time.monotonic()

        def report() -> None:
            while not self._done.wait(self.every_s):
                self.out.write(f"  still starting after {time.monotonic() - began:.0f} s "
                               f"(compiling the kernels) ...\n")
                self.out.flush()

        self._thread = threading.Thread(target=report, name="agentloop-startup", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
