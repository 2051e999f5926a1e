"""Device-resident populations: an engine population stepped by the array backend (CuPy on a GPU,
or NumPy through the same code for tests), with its state living on the device.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import DeviceFault
from engine.kernels.array_learning import make_xp_stepper
from engine.kernels.array_stages import copy_into_host
from engine.kernels.backends import array_module
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.claims import ChunkClaims
from engine.runtime.degrade import ROTATING_FRACTION, STALE_ACTIONS
from engine.runtime.population import Population, PopulationState
from engine.runtime.shared_state import SharedState
from engine.runtime.worker import forced_chunks, process_slice

log = logging.getLogger("agentloop.device")

#: default ticks between copies of a device population's state into shared memory
REFRESH_EVERY = 10
#: rows per deadline check on the device (one launch sequence per chunk)
DEVICE_CHUNK = 65536


@functools.cache
def device_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the device failed, not the code: :class:`DeviceFault` and,
    with CuPy installed, its CUDA runtime, driver and out-of-memory errors."""
    errors: list[type[BaseException]] = [DeviceFault]
    try:
        import cupy  # noqa: PLC0415  (optional dependency)

        errors += [cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError,
                   cupy.cuda.memory.OutOfMemoryError]
    except Exception:  # noqa: BLE001, S110 - no CuPy (or a broken one): only our own fault
        pass
    return tuple(errors)


class DevicePopulation:
    """One population whose state lives on the array backend's device.

    Args:
        state: the population's shared-memory arrays (observations in, actions out, and the
            refreshed copy of the state).
        model, config: the population's model and effective inference config.
        backend: ``"cupy"`` or ``"xp-numpy"``.
        seed, id_offset: the random stream's key, as for CPU populations (same actions).
        refresh_every: ticks between copies of each row of the device state into shared
            memory (a band of ``n / refresh_every`` rows is copied every tick).
        chunk: rows stepped between deadline checks (default :data:`DEVICE_CHUNK`).
        kernel: the array backend's step (``"array"``, ``"fused"`` or ``"auto"``:
            :func:`engine.kernels.array_step.resolve_kernel`).
    """

    def __init__(self, state: SharedState, model: GenerativeModel, config: InferenceConfig,
                 backend: str, seed: int, id_offset: int, refresh_every: int = REFRESH_EVERY,
                 chunk: int | None = None, kernel: str = "auto") -> None:
        self.state = state
        self.backend = backend
        self.xp = array_module(backend)
        self.n = int(state.spec.n_agents)
        self.refresh_every = int(refresh_every)
        self.stepper = make_xp_stepper(model, max(self.n, 1), config, seed=seed, xp=self.xp,
                                       agent_id_offset=id_offset, kernel=kernel)
        self.chunk = max(1, min(int(chunk or DEVICE_CHUNK), self.stepper.chunk_size))
        self._obs_host = self._host_buffer(state.obs.shape, np.int64)
        self._qs_host = np.empty((max(self.n, 1), state.spec.state_size),
                                 dtype=self.stepper.layout.dtype)
        self._refresh_from = 0                   # the first row of the next band to refresh
        self._dirty = False
        self.fail_at_tick: int | None = None     # test hook: a DeviceFault in that tick
        #: CUDA events recorded after the last two chunks launched (None with NumPy)
        self._chunk_done = (None if self.xp is np else
                            [self.xp.cuda.Event(disable_timing=True) for _ in range(2)])

    def _host_buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host buffer with CuPy (fast, asynchronous copies), plain otherwise."""
        if self.xp is np:
            return np.empty(shape, dtype=dtype)
        import cupyx  # noqa: PLC0415  (optional dependency, present with cupy)

        return cupyx.empty_pinned(shape, dtype=dtype)

    # ------------------------------------------------------------------------- stepping
    def step(self, tick: int, deadline: float, level: int) -> int:
        """Step this population's agents at ``level`` until done or past ``deadline``; copy the
        actions into shared memory and clear the stale flags of the rows stepped. Returns how
        many agents ran."""
        if self.n == 0 or level >= STALE_ACTIONS:
            return 0
        if self.fail_at_tick is not None and tick >= self.fail_at_tick:
            raise DeviceFault(f"injected device fault at tick {tick}")
        obs = self._upload_observations()
        kc = self.state.kc_by_level[level]
        ran = launched = 0
        for index, lo in enumerate(range(0, self.n, self.chunk)):
            if level == ROTATING_FRACTION and (index + tick) % 2 == 1:
                continue
            if ran:
                self._wait_for_device(launched)  # CuPy returns at launch: see what has run
                if time.monotonic() > deadline:
                    break
            hi = min(self.n, lo + self.chunk)
            self.stepper.step_rows(obs, lo, hi, tick, kc.num_iter, kc.max_depth)
            if self._chunk_done is not None:
                self._chunk_done[launched % 2].record()
            launched += 1
            self.state.stale[lo:hi] = 0
            ran += hi - lo
        self._finish_tick(ran)
        return ran

    def _wait_for_device(self, launched: int) -> None:
        """Wait until every chunk but the last of the ``launched`` ones has run on the device:
        one chunk stays queued, so the device does not idle while the next is launched, and
        a deadline stops the tick at most one chunk late. Nothing to wait for with NumPy."""
        if self._chunk_done is not None and launched >= 2:
            self._chunk_done[launched % 2].synchronize()     # the event of chunk launched - 2

    def step_forced(self, tick: int, stale_agents: np.ndarray, level: int = 0) -> int:
        """Replay a recorded tick: step every agent except ``stale_agents`` (indices) with the
        kernel settings of ``level``."""
        obs = self._upload_observations()
        kc = self.state.kc_by_level[level]
        ran = 0
        for lo, hi in forced_chunks(self.state.stale, stale_agents, self.chunk):
            self.stepper.step_rows(obs, lo, hi, tick, kc.num_iter, kc.max_depth)
            ran += hi - lo
        self._finish_tick(ran)
        return ran

    def _upload_observations(self) -> Any:
        """This tick's observations from shared memory, on the device (through the pinned
        buffer with CuPy)."""
        np.copyto(self._obs_host, self.state.obs)
        return self.xp.asarray(self._obs_host)

    def _finish_tick(self, ran: int) -> None:
        if ran:
            self.stepper.copy_to_host(actions=self.state.actions)
            self._dirty = True
        self._refresh_band()

    # ------------------------------------------------------------------------- state
    def _refresh_band(self) -> None:
        """Copy the next band of ``ceil(n / refresh_every)`` rows into shared memory."""
        if self.n == 0:
            return
        lo = self._refresh_from
        hi = min(self.n, lo + -(-self.n // self.refresh_every))
        self._copy_rows(lo, hi)
        self._refresh_from = 0 if hi >= self.n else hi

    def sync(self) -> None:
        """Copy the whole device state into shared memory (beliefs quantized as the
        population's codec says), if it changed since the last whole copy."""
        if not self._dirty or self.n == 0:
            return
        self._copy_rows(0, self.n)
        self._dirty = False

    def _copy_rows(self, lo: int, hi: int) -> None:
        """Rows ``lo..hi`` of the device state into the population's shared-memory arrays,
        beliefs encoded on the device."""
        state, stepper, rows = self.state, self.stepper, slice(lo, hi)
        codec = state.codec_instance
        if codec is None:
            stepper.copy_rows_to_host(lo, hi, qs_flat=state.qs[rows])
        elif self.xp is np:                     # already on the host: the compiled encoder
            codec.encode(stepper.qs_flat, state.qs, lo, hi)
        else:
            copy_into_host(codec.encode_array(self.xp, stepper.qs_flat[rows]), state.qs[rows])
        stepper.copy_rows_to_host(lo, hi, q_pi=state.q_pi[rows], G=state.G[rows],
                                  prev_action=state.prev_action[rows],
                                  started=state.started[rows])

    def load_from_shared(self, rows: np.ndarray | None = None) -> None:
        """Upload the shared-memory state of ``rows`` (default all) to the device (after a
        reset or ``load_agent_state`` wrote it there)."""
        if self.n == 0:
            return
        state = self.state
        codec = state.codec_instance
        if codec is None:
            np.copyto(self._qs_host, state.qs)
        else:
            codec.decode(state.qs, self._qs_host)
        idx = slice(None) if rows is None else rows
        self.stepper.load_state(self._qs_host[idx], state.prev_action[idx], state.started[idx],
                                rows=rows)
        self.stepper.load_actions(state.actions[idx], rows=rows)


@dataclasses.dataclass(frozen=True)
class Failover:
    """A device population moved to the CPU in ``tick`` because of ``error``; it continued
    from the state last copied into shared memory."""

    tick: int
    population: str
    error: str


class DevicePopulations:
    """An engine's device-resident populations by index, and the ones that failed over to
    the CPU, which the master then steps with the Numba kernels.

    ``backends`` (the engine's list, one resolved backend per population) and ``views`` (the
    engine's :class:`PopulationState` by name) are updated in place when a population moves,
    and each failover is appended to ``failovers`` (the engine's record, which outlives a run).
    """

    def __init__(self, populations: Sequence[Population], states: Sequence[SharedState],
                 configs: Sequence[InferenceConfig], backends: list[str], seed: int,
                 id_offsets: Sequence[int], refresh_every: int, kernel: str,
                 chunk: int, failovers: list[Failover]) -> None:
        self._populations = list(populations)
        self._states = list(states)
        self._backends = backends
        self._chunk = chunk
        self.refresh_every = refresh_every
        self._device = {
            index: DevicePopulation(state, pop.model, config, backend, seed, id_offsets[index],
                                    refresh_every, kernel=kernel)
            for index, (pop, config, backend, state) in enumerate(
                zip(populations, configs, backends, states, strict=True))
            if backend != "numba"}
        self._on_cpu: list[int] = []
        self._claims: ChunkClaims | None = None
        self._scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._views: Mapping[str, PopulationState] = {}
        self.failovers = failovers

    def attach(self, views: Mapping[str, PopulationState],
               scratch: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """The engine's population views, and the master's Numba scratch a failed-over
        population is stepped with (warmed up beforehand, so a failover does not stall)."""
        self._views = views
        self._scratch = scratch

    def __contains__(self, index: int) -> bool:
        return index in self._device

    def __getitem__(self, index: int) -> DevicePopulation:
        return self._device[index]

    def __len__(self) -> int:
        return len(self._device)

    def __iter__(self) -> Iterator[int]:
        return iter(self._device)

    def sync_function(self, index: int) -> Callable[[], None] | None:
        """What copies population ``index`` into shared memory before a read (None: on CPU)."""
        return self._device[index].sync if index in self._device else None

    def step(self, tick: int, deadline: float, level: int) -> None:
        """Step the device-resident populations (while the CPU workers step theirs), and the
        ones that failed over to the CPU."""
        for index, device in list(self._device.items()):
            try:
                device.step(tick, deadline, level)
            except device_errors() as exc:
                self._fail_over(index, tick, exc)
        if self._on_cpu:
            assert self._claims is not None and self._scratch is not None
            self._claims.start_tick()
            fscratch, iscratch, beliefs = self._scratch
            for index in self._on_cpu:
                process_slice(self._states[index], 0, int(self._populations[index].n_agents),
                              self._chunk, tick, deadline, fscratch, iscratch, beliefs,
                              self._claims, level, None, index)

    def _fail_over(self, index: int, tick: int, exc: BaseException) -> None:
        """The device failed stepping population ``index``: from this tick on the master steps
        it on the CPU, from the state last copied into shared memory (what the device stepped
        since never left it)."""
        self.move_to_cpu(index)
        pop = self._populations[index]
        self.failovers.append(Failover(tick, pop.name, f"{type(exc).__name__}: {exc}"))
        log.warning("population %r: the device failed at tick %d (%s: %s); it continues on "
                    "the CPU from its state in shared memory (at most %d ticks old)", pop.name,
                    tick, type(exc).__name__, exc, self.refresh_every)

    def move_to_cpu(self, index: int) -> None:
        """Drop device population ``index``; the master steps it with the Numba kernels from
        its state in shared memory (a failover, or replay following one)."""
        del self._device[index]
        self._states[index].stale[:] = 1
        self._backends[index] = "numba"
        self._views[self._populations[index].name].detach_device()
        self._on_cpu.append(index)
        self._claims = ChunkClaims.local(
            (tuple((0, int(p.n_agents) if i in self._on_cpu else 0)
                   for i, p in enumerate(self._populations)),), self._chunk)

    def sync(self) -> None:
        """Copy every device-resident population's state into shared memory now (it is also
        copied a band of rows a tick, and whole before it is read through the engine)."""
        for device in self._device.values():
            device.sync()

    def clear(self) -> None:
        """Drop every device population and the run's shared state (frees device memory and
        the shared-memory mappings with the run)."""
        self._device = {}
        self._states = []
        self._views = {}
        self._scratch = None
        self._claims = None
