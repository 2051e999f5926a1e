"""The server of ``agentloop serve``: owns an engine, publishes the region and semaphores of
docs/abi.md under a name, and steps the engine each time the attached client asks."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Protocol

import numpy as np
import posix_ipc

from engine.errors import ObservationError, ServeError, ShmError
from engine.runtime.shm import Run, sweep_stale
from engine.runtime.tick import TickInfo
from engine.serve import handshake
from engine.serve.janitor import Janitor
from engine.serve.layout import (
    CLIENT_ATTACHED,
    COMMAND_DETACH,
    COMMAND_STEP,
    DEFAULT_NAME,
    DONE,
    GO,
    MAGIC,
    MANIFEST,
    REGION,
    SERVER_CLOSED,
    SERVER_READY,
    STATUS_BAD_OBSERVATIONS,
    STATUS_OK,
    STATUS_SERVER_ERROR,
    Header,
    RegionLayout,
    RegionViews,
    check_name,
    set_message,
    shm_name,
)


class ServedEngine(Protocol):
    """What the server needs of an engine (``Engine`` is one; perf's no-op engine another)."""

    model: Any                       # num_obs and num_controls, as GenerativeModel's
    n_agents: int
    seed: int
    last_tick: TickInfo | None
    stop_requested: int | None

    @property
    def stale(self) -> np.ndarray: ...

    def step(self, obs: Any, budget_s: float | None = None) -> Any: ...


@dataclasses.dataclass(frozen=True)
class ServeOutcome:
    """How a session ended: the client detached (``signum`` None) or a signal stopped it."""

    ticks: int
    signum: int | None = None


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived while the server waited for the client."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Server:
    """Serves ``engine`` (started, one population) to one client under ``name``: call
    :meth:`open`, then :meth:`serve`, then :meth:`close` (or use it as a context manager).

    ``budget_s`` is each tick's budget (None: every agent every tick); ``attach_timeout_s``
    and ``client_timeout_s`` bound the wait for a client and between its requests (None: no
    limit while it lives). ``janitor``: the caller's, which then also watches the engine's
    run (closed by the caller after the engine); without one the server starts its own, for
    its region alone."""

    def __init__(self, engine: ServedEngine, name: str = DEFAULT_NAME,
                 budget_s: float | None = None, attach_timeout_s: float | None = None,
                 client_timeout_s: float | None = None,
                 poll_s: float = handshake.POLL_S, janitor: Janitor | None = None) -> None:
        populations = len(getattr(engine, "populations", ()) or (None,))
        if populations != 1:
            raise ServeError(f"server {name!r}: ABI version 1 serves one population, the "
                             f"engine has {populations}")
        self.engine = engine
        self.name = check_name(name)
        self.budget_s = budget_s
        self.attach_timeout_s = attach_timeout_s
        self.client_timeout_s = client_timeout_s
        self.poll_s = poll_s
        model = engine.model
        self.layout = RegionLayout.for_shape(int(engine.n_agents), len(model.num_obs),
                                             len(model.num_controls))
        self.header: Header | None = None
        self.views: RegionViews | None = None
        self._run: Run | None = None
        self._fd: int | None = None
        self._janitor = janitor
        self._own_janitor = janitor is None
        self._last_heard = 0.0

    @property
    def names(self) -> dict[str, str]:
        """The POSIX names a client opens: ``region``, ``go``, ``done`` and ``manifest``."""
        return {key: shm_name(self.name, short) for key, short in (
            ("region", REGION), ("go", GO), ("done", DONE), ("manifest", MANIFEST))}

    # ------------------------------------------------------------------------- lifetime
    def open(self) -> Server:
        """Create the region and semaphores (after sweeping dead runs) and mark it ready."""
        if self._run is not None:
            return self
        sweep_stale()
        if self._janitor is None:
            self._janitor = Janitor()
        try:
            self._run = Run(run_id=self.name)
        except ShmError as exc:
            self.close()
            if "exists" in str(exc):
                raise ServeError(f"a server named {self.name!r} is already running "
                                 f"({self.names['manifest']} exists)") from None
            raise
        try:
            self._janitor.watch(self.name)    # ours now: the janitor may remove it
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        assert self._run is not None
        buffer = self._run.create_array(REGION, (self.layout.region_bytes,), np.uint8)
        header = Header.from_buffer(buffer)
        views = self.layout.views(buffer)
        views.num_obs[:] = self.engine.model.num_obs
        views.num_actions[:] = self.engine.model.num_controls
        self.layout.write(header)
        header.seed = int(self.engine.seed)
        header.budget_s = float(self.budget_s or 0.0)
        header.server_pid = os.getpid()
        self._go = self._run.create_semaphore(GO)
        self._done = self._run.create_semaphore(DONE)
        shm = posix_ipc.SharedMemory(self.names["region"])
        self._fd = shm.fd                     # kept open: the client's lock is tested on it
        self.header, self.views = header, views
        header.magic = MAGIC                  # last: a client that sees it sees the rest
        header.server_state = SERVER_READY

    def close(self) -> None:
        """Mark the region closed, wake a waiting client, remove every name; idempotent."""
        self._mark_closed()
        self.header = self.views = None       # drop the views so the map can close
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._run is not None:
            self._run.close()
            self._run = None
        if self._janitor is not None and self._own_janitor:
            self._janitor.close()
            self._janitor = None

    def _mark_closed(self) -> None:
        """The session is over: say so in the region and wake a client waiting for a tick."""
        header = self.header
        if header is not None and header.server_state != SERVER_CLOSED:
            header.server_state = SERVER_CLOSED
            if header.client_state == CLIENT_ATTACHED:
                self._done.release()

    def __enter__(self) -> Server:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- serving
    def serve(self) -> ServeOutcome:
        """Answer the client's requests until it detaches (or a signal stops the server);
        then the region says the server has closed.

        ServeError when the client dies without detaching, none attaches within
        ``attach_timeout_s``, or an attached one asks nothing for ``client_timeout_s``."""
        if self.header is None:
            raise ServeError(f"server {self.name!r}: call open() first")
        engine, header = self.engine, self.header
        was_in_run = getattr(engine, "_in_run", False)
        # a signal then stops the server after its reply, not inside Engine.step
        engine._in_run = True          # type: ignore[attr-defined]
        self._last_heard = time.monotonic()
        try:
            while True:
                self._wait_request()
                if header.command == COMMAND_DETACH:
                    return ServeOutcome(int(header.ticks_done))
                if header.command == COMMAND_STEP:
                    self._step()
                else:
                    self._reply(STATUS_SERVER_ERROR, f"unknown command {header.command}")
                self._last_heard = time.monotonic()
                if engine.stop_requested is not None:
                    return ServeOutcome(int(header.ticks_done), engine.stop_requested)
        except _Stopped as stop:
            return ServeOutcome(int(header.ticks_done), stop.signum)
        finally:
            engine._in_run = was_in_run  # type: ignore[attr-defined]
            self._mark_closed()              # one session per server (docs/abi.md)

    def _wait_request(self) -> None:
        handshake.wait(self._go, self._why_no_request, None,
                       f"server {self.name!r}", self.poll_s)

    def _why_no_request(self) -> str | None:
        """Between slices of the wait for ``go``: a signal, a dead or silent client, or no
        client in time (None: keep waiting)."""
        header, engine = self.header, self.engine
        assert header is not None and self._fd is not None
        if engine.stop_requested is not None:
            raise _Stopped(engine.stop_requested)
        waited = time.monotonic() - self._last_heard
        if header.client_state == CLIENT_ATTACHED:
            if not handshake.lock_is_held(self._fd, shared=False):
                return (f"client (pid {header.client_pid}) died without detaching after "
                        f"{header.ticks_done} ticks")
            if self.client_timeout_s is not None and waited > self.client_timeout_s:
                return (f"client (pid {header.client_pid}) asked for nothing in "
                        f"{self.client_timeout_s:g} s")
        elif self.attach_timeout_s is not None and waited > self.attach_timeout_s:
            return f"no client attached within {self.attach_timeout_s:g} s"
        return None

    def _step(self) -> None:
        header, views = self.header, self.views
        assert header is not None and views is not None
        try:
            actions = self.engine.step(views.obs, budget_s=self.budget_s)
        except ObservationError as exc:
            self._reply(STATUS_BAD_OBSERVATIONS, str(exc))
            return
        except BaseException as exc:
            self._reply(STATUS_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
            raise
        np.copyto(views.actions, actions)
        np.copyto(views.stale, self.engine.stale)
        info = self.engine.last_tick
        if info is not None:
            header.tick = info.tick
            header.wall_s = info.wall_s
            header.stale_agents = info.stale_agents
            header.level = info.level
        header.ticks_done += 1
        self._reply(STATUS_OK, "")

    def _reply(self, status: int, message: str) -> None:
        header = self.header
        assert header is not None
        header.status = status
        if message or header.message:
            set_message(header, message)
        header.reply_seq = header.request_seq
        self._done.release()
