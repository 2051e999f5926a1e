"""Where a benchmark run is, on stderr."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """Where the run is, on stderr: a bar rewritten in place on a terminal, plain lines else."""

    def __init__(self, total: int, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def note(self, label: str) -> None:
        """Show ``label`` as what runs now (the count does not move)."""
        self._show(label)

    def step(self, label: str, units: int = 1) -> None:
        """Count ``units`` as done, then show ``label`` as what runs next."""
        self.done = min(self.total, self.done + units)
        self._show(label)

    def _show(self, label: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        clock = f"{int(elapsed // 60)}:{int(elapsed % 60):02d}"
        if self.tty:
            width = 24
            fill = round(width * self.done / self.total)
            self.stream.write(f"\r\x1b[K[{'#' * fill}{'.' * (width - fill)}] "
                              f"{self.done}/{self.total} {clock} {label}"[:200])
        else:
            self.stream.write(f"[bench {self.done:>3}/{self.total} {clock}] {label}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (a warning, a skipped measurement)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"[bench] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
