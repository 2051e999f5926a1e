"""Stopping on SIGINT/SIGTERM after the current tick, shared by the engines' tick loops."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopOnSignal:
    """SIGINT/SIGTERM set :attr:`stop_requested`; the loop finishes its tick, then
    :meth:`_honour_stop` closes the engine and raises ``KeyboardInterrupt``/``SystemExit``."""

    stop_requested: int | None = None

    def close(self) -> None:  # pragma: no cover - every engine defines it
        raise NotImplementedError

    def _install_signal_handlers(self) -> None:
        self.stop_requested = None
        self._previous_handlers: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = signum

    def _restore_signal_handlers(self) -> None:
        for sig, handler in getattr(self, "_previous_handlers", {}).items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    def _honour_stop(self) -> None:
        """After a tick: a pending SIGINT/SIGTERM closes the engine and exits."""
        if self.stop_requested is not None:
            signum = self.stop_requested
            self.close()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
