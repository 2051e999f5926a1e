"""Fault injection for the reliability tests: make one worker fail at a chosen point of a tick.

``AGENTLOOP_FAULT="worker=1,tick=3,phase=compute[,mode=exit|raise|stop]"`` in the master's
environment arms it; the phases and modes are described in docs/architecture.md."""

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
