"""Stopping on SIGINT/SIGTERM after the current tick, shared by the engines' tick loops."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """SIGINT/SIGTERM set :attr:`stop_requested`; the loop finishes its tick, then
    :meth:`_honour_stop` closes the engine and raises ``KeyboardInterrupt``/``SystemExit``.

    Handlers can be changed only in the main thread. An engine closed in another thread leaves
    its handler installed but disarmed: the next signal goes to the handler it replaced, which
    the handler then puts back (handlers run in the main thread).
    """

    stop_requested: int | None = None
    #: the handlers ours replaced, by signal; ``_armed``: ours act on a signal (not closed)
    _previous_handlers: dict[int, Any]
    _armed: bool = False

    def close(self) -> None:  # pragma: no cover - every engine defines it
        raise NotImplementedError

    def _install_signal_handlers(self) -> None:
        self.stop_requested = None
        if threading.current_thread() is not threading.main_thread():
            return
        self._restore_signal_handlers()          # what an earlier start's handlers replaced
        previous = self._previous_handlers = getattr(self, "_previous_handlers", {})
        for sig in SIGNALS:
            if sig not in previous:              # else ours is still chained under another
                previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        self._armed = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self.stop_requested = signum
            return
        previous = getattr(self, "_previous_handlers", {}).get(signum, signal.SIG_DFL)
        self._restore_signal_handlers()
        _forward(previous, signum, frame)

    def _restore_signal_handlers(self) -> None:
        """Disarm our handlers, and in the main thread put back the ones they replaced."""
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return                              # _on_signal puts them back
        previous = getattr(self, "_previous_handlers", {})
        for sig, handler in list(previous.items()):
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
                del previous[sig]
            # else a later handler calls ours: it stays disarmed and forwards to ``handler``

    def _honour_stop(self) -> None:
        """After a tick: a pending SIGINT/SIGTERM closes the engine and exits."""
        if self.stop_requested is not None:
            signum = self.stop_requested
            self.close()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)


def _forward(handler: Any, signum: int, frame: FrameType | None) -> None:
    """Act on a signal as ``handler`` (what ``signal.getsignal`` returned) would."""
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:             # SIG_DFL, or a handler not set from Python
        signal.signal(signum, signal.SIG_DFL)   # SIGINT's and SIGTERM's default: terminate
        signal.raise_signal(signum)
