"""A Python client of ``agentloop serve`` (ABI of docs/abi.md): attach to a server by name,
write observations into the region, step, read actions, stale flags and tick info."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import time
from typing import Any

import numpy as np
import posix_ipc

from engine.errors import ObservationError, ServeError
from engine.kernels.observations import check_array
from engine.runtime.tick import TickInfo
from engine.serve import handshake
from engine.serve.layout import (
    CLIENT_ATTACHED,
    CLIENT_DETACHED,
    COMMAND_DETACH,
    COMMAND_STEP,
    DEFAULT_NAME,
    DONE,
    GO,
    HEADER_BYTES,
    MAGIC,
    MANIFEST,
    REGION,
    SERVER_CLOSED,
    SERVER_READY,
    STATUS_BAD_OBSERVATIONS,
    STATUS_OK,
    Header,
    RegionLayout,
    RegionViews,
    check_name,
    message_of,
    shm_name,
)


class ServeClient:
    """The client of the server named ``name``. ``attach()`` (or ``with``) waits up to
    ``attach_timeout_s`` for the server to be ready; ``step()`` waits up to
    ``step_timeout_s`` (None: as long as the server lives) for each tick's actions.

    :attr:`obs` is the region's ``(n, n_modalities)`` int64 observation array (write it, or
    pass ``obs`` to :meth:`step`); the actions and stale flags :meth:`step` returns are views
    of the region that the next step overwrites."""

    def __init__(self, name: str = DEFAULT_NAME, attach_timeout_s: float = 30.0,
                 step_timeout_s: float | None = None,
                 poll_s: float = handshake.POLL_S) -> None:
        self.name = check_name(name)
        self.attach_timeout_s = attach_timeout_s
        self.step_timeout_s = step_timeout_s
        self.poll_s = poll_s
        self.last_tick: TickInfo | None = None
        self.header: Header | None = None
        self._views: RegionViews | None = None
        self._map: mmap.mmap | None = None
        self._fd: int | None = None
        self._manifest_fd: int | None = None
        self._semaphores: list[posix_ipc.Semaphore] = []
        self._seq = 0
        self._pid = os.getpid()

    # ------------------------------------------------------------------------- attaching
    def attach(self) -> ServeClient:
        """Open the server's region (waiting for it to be ready), lock it as its one client,
        and open its semaphores. ServeError when there is none in time, it speaks another
        ABI, another client holds it, or its server is dead."""
        if self.header is not None:
            return self
        try:
            self._attach(time.monotonic() + self.attach_timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _attach(self, deadline: float) -> None:
        where = f"agentloop serve {self.name!r}"
        region = shm_name(self.name, REGION)
        while True:
            self._open_region(region)
            if self._map is not None:
                header = Header.from_buffer(self._map)
                if header.magic == MAGIC and header.server_state != 0:
                    break
                del header
            if time.monotonic() > deadline:
                raise ServeError(f"{where}: no server ready ({region} "
                                 f"{'not found' if self._fd is None else 'not ready'} after "
                                 f"{self.attach_timeout_s:g} s); start one with `agentloop "
                                 f"serve --name {self.name}`")
            self._close_region()
            time.sleep(0.02)
        if header.server_state != SERVER_READY:
            raise ServeError(f"{where}: the server has closed")
        layout = RegionLayout.from_header(header, len(self._map), where)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServeError(f"{where}: another client (pid {header.client_pid}) is "
                             f"attached") from None
        try:
            manifest = posix_ipc.SharedMemory(shm_name(self.name, MANIFEST),
                                              flags=posix_ipc.O_RDONLY)
            self._manifest_fd = manifest.fd
            self._semaphores = [posix_ipc.Semaphore(shm_name(self.name, short))
                                for short in (GO, DONE)]
        except posix_ipc.ExistentialError as exc:
            raise ServeError(f"{where}: the server is gone ({exc})") from None
        self.header, self._views = header, layout.views(np.frombuffer(self._map, np.uint8))
        reason = self._why_no_reply()
        if reason:
            raise ServeError(reason)
        self._seq = int(header.request_seq)
        self._pid = os.getpid()
        header.client_pid = self._pid
        header.client_state = CLIENT_ATTACHED

    def _open_region(self, region: str) -> None:
        try:
            shm = posix_ipc.SharedMemory(region)
        except posix_ipc.ExistentialError:
            return
        self._fd = shm.fd
        if shm.size >= HEADER_BYTES:            # else still being sized by the server
            self._map = mmap.mmap(self._fd, shm.size)

    def _close_region(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)                  # also gives up the lock, if held
            self._fd = None

    # ------------------------------------------------------------------------- stepping
    @property
    def obs(self) -> np.ndarray:
        """The region's observation array, ``(n_agents, n_modalities)`` int64 (writable)."""
        return self._require().obs

    @property
    def stale(self) -> np.ndarray:
        """1 for the agents the last tick did not reach (a read-only view of the region)."""
        stale = self._require().stale.view()
        stale.flags.writeable = False
        return stale

    @property
    def num_obs(self) -> tuple[int, ...]:
        """Outcomes per modality: observation ``m`` must lie in ``0 .. num_obs[m] - 1``."""
        return tuple(int(v) for v in self._require().num_obs)

    @property
    def num_actions(self) -> tuple[int, ...]:
        """Actions per factor (1 for a factor the agents do not control)."""
        return tuple(int(v) for v in self._require().num_actions)

    @property
    def n_agents(self) -> int:
        return int(self._require().obs.shape[0])

    def step(self, obs: Any = None) -> np.ndarray:
        """One tick: copy ``obs`` (if given) into the region, hand it to the server and wait;
        the ``(n_agents, n_factors)`` actions, a read-only view the next step overwrites.
        ObservationError when the server refused the observations (nothing changed there),
        ServeError when the server died, closed, failed or did not answer in time."""
        views = self._require()
        header = self.header
        assert header is not None
        if obs is not None:
            obs = np.asarray(obs)
            check_array(obs, np.ndarray, *views.obs.shape)       # integers of the right shape
            np.copyto(views.obs, obs, casting="unsafe")          # the server checks the range
        self._seq += 1
        header.command = COMMAND_STEP
        header.request_seq = self._seq
        self._semaphores[0].release()
        while True:
            handshake.wait(self._semaphores[1], self._why_no_reply, self.step_timeout_s,
                           f"agentloop serve {self.name!r}: tick {self._seq}", self.poll_s)
            if header.reply_seq == self._seq:
                break
            reason = self._why_no_reply()           # a close's wake-up, not our reply
            if reason:
                raise ServeError(reason)
        if header.status == STATUS_BAD_OBSERVATIONS:
            raise ObservationError(message_of(header))
        if header.status != STATUS_OK:
            raise ServeError(f"agentloop serve {self.name!r}: {message_of(header)}")
        self.last_tick = TickInfo(tick=int(header.tick), wall_s=float(header.wall_s),
                                  deadline_s=float(header.budget_s) or None,
                                  stale_agents=int(header.stale_agents), level=int(header.level))
        actions = views.actions.view()
        actions.flags.writeable = False
        return actions

    def _why_no_reply(self) -> str | None:
        header = self.header
        assert header is not None and self._manifest_fd is not None
        where = f"agentloop serve {self.name!r}"
        if header.server_state == SERVER_CLOSED:
            return f"{where}: the server (pid {header.server_pid}) has closed"
        if not handshake.lock_is_held(self._manifest_fd, shared=True):
            return (f"{where}: the server (pid {header.server_pid}) died after "
                    f"{header.ticks_done} ticks")
        return None

    def _require(self) -> RegionViews:
        if self._views is None:
            raise ServeError(f"agentloop serve {self.name!r}: not attached (call attach() or "
                             f"use `with ServeClient(...)`)")
        return self._views

    # ------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Tell a live server this client detaches, then let go of everything; idempotent.
        In a forked child it only lets go: the session is the parent's."""
        header = self.header
        if (header is not None and os.getpid() == self._pid
                and self._why_no_reply() is None):
            header.command = COMMAND_DETACH
            header.client_state = CLIENT_DETACHED
            header.request_seq = self._seq + 1
            self._semaphores[0].release()
        self.header = self._views = None
        for semaphore in self._semaphores:
            semaphore.close()
        self._semaphores = []
        if self._manifest_fd is not None:
            os.close(self._manifest_fd)
            self._manifest_fd = None
        self._close_region()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: best effort
            pass

    def __enter__(self) -> ServeClient:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.close()
