"""Fault injection for the reliability tests: make one worker fail at a chosen point of a tick.

``AGENTLOOP_FAULT="worker=1,tick=3,phase=compute[,mode=exit|raise|stop]"`` in the environment
of an engine's master (workers inherit it) makes worker 1, at ``phase`` of tick 3, exit
abruptly (``exit``, the default: ``os._exit``, as a SIGKILL would leave it), raise an exception
(``raise``) or stop itself with SIGSTOP like a hung worker (``stop``). Phases: ``wait``
(released, nothing done), ``compute`` (a chunk computed, not committed), ``commit-<array>`` (a
commit half done: after copying ``<array>``, one of ``engine.journal.FIELDS``) or ``done`` (the
tick finished, not yet reported). The fault fires at the first such point in tick 3 or later
(a worker whose helper took all its chunks in tick 3 computes nothing then), once per run: a
respawned worker does not re-arm it. Unset, every check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "AGENTLOOP_FAULT"
#: exit status of a worker killed by an injected fault
FAULT_EXIT = 70

_plan: dict[str, str] = {}
_armed = False


def configure(worker: int, respawned: bool = False) -> None:
    """Read the plan from the environment for worker ``worker`` (call once at start); a
    respawned worker takes none (the plan fired in the worker it replaces)."""
    _plan.clear()
    text = os.environ.get(ENV, "")
    if not text or respawned:
        return
    plan = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    if plan.get("worker") == str(worker):
        _plan.update(plan)


def arm(tick: int) -> None:
    """Arm the plan for ``tick`` (it fires in the tick it names or a later one)."""
    global _armed
    _armed = bool(_plan) and tick >= int(_plan.get("tick", "0"))


def fault_point(phase: str) -> None:
    """Exit here when the armed plan names ``phase``."""
    if _armed and _plan.get("phase") == phase:
        mode = _plan.get("mode", "exit")
        if mode == "raise":
            raise RuntimeError(f"injected fault at {phase}")
        if mode == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        os._exit(FAULT_EXIT)
