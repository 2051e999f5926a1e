"""Deterministic replay of a tick log: re-run the engine and verify every recorded action.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from engine.errors import ReplayError, TickLogError
from engine.kernels.backends import cupy_available
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.engine import Engine
from engine.ticklog.logset import TickLogSet, open_log
from engine.ticklog.reader import TickLogReader

LogReader = TickLogReader | TickLogSet


@dataclasses.dataclass(frozen=True)
class Divergence:
    """The first recorded action replay did not reproduce, and how the agent got there."""

    tick: int
    agent: int
    factor: int
    expected: int
    actual: int
    observation: list[int]
    prior: list[list[float]]
    """The agent's beliefs per factor before the tick (what the previous tick left)."""
    posterior: list[list[float]]
    q_pi: list[float]
    G: list[float]

    def report(self) -> str:
        """The desync report: where, what, and the beliefs behind it."""

        def fmt(values: list[float]) -> str:
            return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"

        lines = [f"desync at tick {self.tick}, agent {self.agent}, factor {self.factor}: "
                 f"expected action {self.expected}, replay chose {self.actual}",
                 f"  observation: {self.observation}"]
        for f, (pre, post) in enumerate(zip(self.prior, self.posterior, strict=True)):
            lines.append(f"  factor {f} beliefs before: {fmt(pre)}")
            lines.append(f"  factor {f} beliefs after:  {fmt(post)}")
        lines.append(f"  q(pi): {fmt(self.q_pi)}")
        lines.append(f"  G:     {fmt(self.G)}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """What replay checked: ticks ``first_tick..last_tick`` (``ticks`` of them)."""

    ticks: int
    first_tick: int | None
    last_tick: int | None
    started_from_snapshot: int | None
    divergence: Divergence | None
    truncated: bool
    seconds: float
    final_state: dict[str, np.ndarray] | None = None
    """Every agent's state after the last replayed tick (``keep_state=True``)."""
    unverified: tuple[int, ...] = ()
    """Ticks taken from the log instead of recomputed (device failovers)."""
    files: tuple[str, ...] = ()
    """The files replayed, in order (one unless the log is a rotated set)."""
    rotated_away: tuple[str, ...] = ()
    """Earlier files of the set no longer on disk (replay started after them)."""
    started_mid_run: bool = False
    """Whether replay started in a later file of a set, from the snapshot it opens with."""
    missing_next: str | None = None
    """The file the last one says the log continues in, when it is absent (cut off)."""

    @property
    def ok(self) -> bool:
        return self.divergence is None


def engine_from_log(reader: LogReader, threads: int | None = None) -> Engine:
    """An (unstarted) in-process engine configured as the logged run was."""
    header = reader.header
    if header.model_npz is None:
        raise TickLogError(f"{reader.path}: the header carries no model, so it cannot be "
                           f"replayed")
    model = GenerativeModel.from_npz_bytes(header.model_npz, f"{reader.path}:header.model")
    if header.model_hash and model.content_hash() != header.model_hash:
        raise TickLogError(f"{reader.path}: the header's model does not match its hash")
    extra = header.extra
    if not isinstance(header.config, dict) or not isinstance(extra, dict):
        raise TickLogError(f"{reader.path}: the header's config and extra must be JSON "
                           f"objects, got {type(header.config).__name__} and "
                           f"{type(extra).__name__}")
    config = InferenceConfig.from_dict(header.config)
    try:
        seed, chunk = int(header.seed), int(extra.get("chunk", 1024))
    except (TypeError, ValueError, OverflowError) as exc:
        raise TickLogError(f"{reader.path}: the header's seed and chunk must be whole numbers "
                           f"({exc})") from None
    if not 1 <= chunk <= MAX_CHUNK:
        raise TickLogError(f"{reader.path}: the header's chunk must be in 1..{MAX_CHUNK:,}, "
                           f"got {chunk:,}")
    _check_agent_count(reader)
    backend = str(extra.get("backend", "numba"))
    if backend == "cupy" and not cupy_available()[0]:
        backend = "xp-numpy"                     # the same code on the CPU (last-bit twin)
    return Engine(model, header.n_agents, workers=0, config=config, seed=seed,
                  chunk=chunk, threads=threads, degrade=False,
                  beliefs=str(extra.get("beliefs", "uint16")), backend=backend,
                  xp_kernel=str(extra.get("xp_kernel", "array")))


MAX_CHUNK = 1 << 20
"""Largest ``chunk`` (agents a worker steps between deadline checks) a header may give."""


def _check_agent_count(reader: LogReader) -> None:
    """The header's ``n_agents`` is what the first tick records (checked before an engine of
    that many agents is built)."""
    first = next(reader.ticks(), None)
    n = reader.header.n_agents
    if first is not None and first.observations.shape[0] != n:
        raise TickLogError(f"{reader.path}: the header says {n:,} agents, tick {first.tick} "
                           f"records observations of {first.observations.shape[0]:,}")


def replay(path: str, from_tick: int | None = None,
           progress: Callable[[int, int], None] | None = None,
           threads: int | None = None, keep_state: bool = False) -> ReplayResult:
    """Replay the log at ``path`` (one file or a rotated set, :class:`TickLogSet`);
    ``from_tick`` starts at the nearest snapshot before it (a set read from a later file
    starts at the snapshot that file opens with, or later).

    ``progress(done, total)`` is called after each tick; ``keep_state`` returns every agent's
    state after the last tick (:meth:`Engine.agent_state`) in ``final_state``. Raises
    :class:`TickLogError` for an unreadable log and :class:`AgentloopError` when the log cannot
    be replayed as recorded.
    """
    began = time.monotonic()
    with open_log(path) as reader:
        last = reader.last_tick
        engine = engine_from_log(reader, threads)
        if reader.starts_mid_run:
            from_tick = max(from_tick or 0, reader.start_tick)
        with engine:
            start, snapshot_tick = _starting_point(reader, engine, from_tick)
            total = 0 if last is None else max(0, last - start + 1)
            before = np.empty_like(engine.state.qs)
            checked, first, previous = 0, None, None
            unverified: list[int] = []
            for record in reader.ticks(start):
                if previous is not None and record.tick != previous + 1:
                    raise TickLogError(f"{reader.current_file}: tick {previous + 1} is "
                                       f"missing (the log jumps from {previous} to "
                                       f"{record.tick})")
                if previous is None and snapshot_tick is None and record.tick != 0:
                    raise TickLogError(f"{path}: the first tick is {record.tick} and there is "
                                       f"no belief snapshot before it to start from")
                if record.failover is not None:
                    _take_failover(reader, engine, record)
                    unverified.append(record.tick)
                    first = record.tick if first is None else first
                    previous = record.tick
                    continue
                for agents, keep_action in record.resets:
                    engine.reset(agents, keep_action=keep_action)
                np.copyto(before, engine.state.qs)
                engine.tick = record.tick
                actions = engine.step(record.observations, level=record.level,
                                      stale=record.stale_agents)
                if record.actions.shape != actions.shape:
                    raise TickLogError(f"{path}: tick {record.tick} records actions of "
                                       f"shape {record.actions.shape}, the engine gives "
                                       f"{actions.shape}")
                if not np.array_equal(actions, record.actions):
                    divergence = _divergence(engine, record, before)
                    return ReplayResult(checked, first, previous, snapshot_tick, divergence,
                                        reader.truncated, time.monotonic() - began,
                                        unverified=tuple(unverified), **_set_fields(reader))
                checked += 1
                first = record.tick if first is None else first
                previous = record.tick
                if progress is not None:
                    progress(checked, total)
            final = engine.agent_state() if keep_state else None
        return ReplayResult(checked, first, previous, snapshot_tick, None, reader.truncated,
                            time.monotonic() - began, final, tuple(unverified),
                            **_set_fields(reader))


def _set_fields(reader: TickLogSet) -> dict[str, object]:
    return {"files": tuple(reader.files), "rotated_away": tuple(reader.rotated_away),
            "started_mid_run": reader.starts_mid_run, "missing_next": reader.missing_next}


def _take_failover(reader: LogReader, engine: Engine, record) -> None:  # noqa: ANN001
    """The live run's device failed in ``record.tick``: continue on the CPU from the snapshot
    recorded after that tick (the state the live run had then)."""
    snapshot = reader.snapshot_at_or_before(record.tick)
    if snapshot is None or snapshot.tick != record.tick:
        raise ReplayError(f"{reader.path}: the device failed over to the CPU in tick "
                          f"{record.tick} ({record.failover}) and the log has no snapshot "
                          f"of that tick to continue from")
    _load_snapshot(reader, engine, snapshot)           # its backend is "numba": the CPU
    engine.state.actions[...] = record.actions


def _load_snapshot(reader: LogReader, engine: Engine, snapshot) -> None:  # noqa: ANN001
    """Load a belief snapshot; the next step is the tick after it. A snapshot taken after a
    failover (its backend ``"numba"``) moves a device population to the CPU first."""
    if snapshot.meta.get("backend") == "numba" and 0 in engine.devices:
        engine.devices.move_to_cpu(0)
    names = snapshot.meta.get("names", list(Engine.STATE_ARRAYS))
    if not isinstance(names, list) or len(names) != len(snapshot.arrays):
        raise TickLogError(f"{reader.path}: the belief snapshot at tick {snapshot.tick} names "
                           f"{names!r} for its {len(snapshot.arrays)} arrays")
    engine.load_agent_state(dict(zip(names, snapshot.arrays, strict=True)), snapshot.tick + 1)


def _starting_point(reader: LogReader, engine: Engine, from_tick: int | None
                    ) -> tuple[int, int | None]:
    """The first tick to replay and the snapshot (if any) loaded into ``engine``."""
    if not from_tick:
        return 0, None
    snapshot = reader.snapshot_at_or_before(int(from_tick) - 1)
    if snapshot is None:
        return 0, None
    _load_snapshot(reader, engine, snapshot)
    return snapshot.tick + 1, snapshot.tick


def _divergence(engine: Engine, record, before: np.ndarray) -> Divergence:  # noqa: ANN001
    actual = np.asarray(engine.state.actions)
    agent, factor = (int(v) for v in np.argwhere(actual != record.actions)[0])
    layout = engine.checkers[0].layout
    offsets = layout.state_offset
    codec = engine.state.codec_instance

    def decode(row: np.ndarray) -> np.ndarray:
        if codec is None:
            return row.astype(np.float64)
        out = np.empty((1, row.shape[-1]), dtype=layout.dtype)
        codec.decode(row.reshape(1, -1), out)
        return out[0].astype(np.float64)

    prior, posterior = decode(before[agent]), decode(engine.state.qs[agent])
    split = [(int(offsets[f]), int(offsets[f + 1])) for f in range(len(offsets) - 1)]
    return Divergence(
        tick=int(record.tick), agent=agent, factor=factor,
        expected=int(record.actions[agent, factor]), actual=int(actual[agent, factor]),
        observation=[int(o) for o in record.observations[agent]],
        prior=[prior[a:b].tolist() for a, b in split],
        posterior=[posterior[a:b].tolist() for a, b in split],
        q_pi=engine.state.q_pi[agent].astype(float).tolist(),
        G=engine.state.G[agent].astype(float).tolist())
