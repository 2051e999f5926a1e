"""A worker's journal: each chunk's results are staged, then committed in a step the master can
finish if the worker dies during it, so no agent is ever left half-updated.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import numpy as np

from engine.kernels.numba import step as numba_step
from engine.runtime.faults import fault_point
from engine.runtime.shared_state import WRITTEN_FIELDS, SharedState, StateSpec
from engine.runtime.shm import Run
from engine.runtime.stepping import step_rows

IDLE, COMMITTING = 0, 1
#: the per-agent arrays a tick writes and a commit copies (and a learning population's own
#: parameters after them: ``StateSpec.written_arrays``)
FIELDS = WRITTEN_FIELDS
#: journal header: state, population, lo, hi, tick
HEADER_SIZE = 5


def _field_shapes(spec: StateSpec, chunk: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Staging rows of every per-agent array a tick writes (``StateSpec.written_arrays``:
    beliefs as stored, codes when quantized; a learning population's own parameters)."""
    arrays = spec.per_agent_arrays()
    return {name: ((chunk, *arrays[name][0][1:]), arrays[name][1])
            for name in spec.written_arrays()}


class Journal:
    """Worker ``index``'s staging rows (``chunk`` agents of every population) and header."""

    def __init__(self, header: np.ndarray, staged: list[dict[str, np.ndarray]]) -> None:
        self.header = header
        self.staged = staged

    @staticmethod
    def create(run: Run, index: int, specs: tuple[StateSpec, ...], chunk: int) -> Journal:
        header = run.create_array(f"journal{index}", (HEADER_SIZE,), "int64")
        staged = [{name: run.create_array(f"{spec.prefix}journal{index}-{name}", shape, dtype)
                   for name, (shape, dtype) in _field_shapes(spec, chunk).items()}
                  for spec in specs]
        return Journal(header, staged)

    @staticmethod
    def attach(run: Run, index: int, specs: tuple[StateSpec, ...], chunk: int) -> Journal:
        header = run.attach_array(f"journal{index}", (HEADER_SIZE,), "int64")
        staged = [{name: run.attach_array(f"{spec.prefix}journal{index}-{name}", shape, dtype)
                   for name, (shape, dtype) in _field_shapes(spec, chunk).items()}
                  for spec in specs]
        return Journal(header, staged)

    def run_chunk(self, population: int, state: SharedState, kc: numba_step.KernelConfig, lo: int,
                  hi: int, tick: int, fscratch: np.ndarray, iscratch: np.ndarray,
                  beliefs: np.ndarray, token: int) -> None:
        """Step agents ``lo..hi`` into the staging rows, then commit them (``token``: the
        kernels' memo token, ``engine.worker.memo_token``)."""
        rows = hi - lo
        staged = self.staged[population]
        prev_action, started = staged["prev_action"][:rows], staged["started"][:rows]
        np.copyto(prev_action, state.prev_action[lo:hi])
        np.copyto(started, state.started[lo:hi])
        codec = state.codec_instance
        if codec is None:
            qs = staged["qs"][:rows]
            np.copyto(qs, state.qs[lo:hi])
        else:
            size = state.spec.state_size
            qs = beliefs[:rows * size].reshape(rows, size)
            codec.decode(state.qs[lo:hi], qs)
        params = None
        if state.params is not None:
            for name in state.own_params:
                np.copyto(staged[name][:rows], getattr(state, name)[lo:hi])
            params = state.params.rows(lo, hi, staged)
        step_rows(state, kc, lo, hi, qs, prev_action, started, staged["q_pi"][:rows],
                  staged["G"][:rows], staged["actions"][:rows], params, tick, fscratch,
                  iscratch, token)
        if codec is not None:
            codec.encode(qs, staged["qs"][:rows])
        fault_point("compute")
        self.commit(population, state, lo, hi, tick)

    def commit(self, population: int, state: SharedState, lo: int, hi: int, tick: int) -> None:
        """Copy the staged rows of agents ``lo..hi`` into the population's arrays."""
        header = self.header
        header[1], header[2], header[3], header[4] = population, lo, hi, tick
        header[0] = COMMITTING
        self._copy(population, state, lo, hi)
        header[0] = IDLE

    def recover(self, states: tuple[SharedState, ...] | list[SharedState]
                ) -> tuple[int, int, int, int] | None:
        """Finish a commit the worker died in (master side, the worker being dead); returns
        ``(population, lo, hi, tick)`` of the finished commit, or None when there was none."""
        header = self.header
        if int(header[0]) != COMMITTING:
            return None
        population, lo, hi, tick = (int(v) for v in header[1:5])
        self._copy(population, states[population], lo, hi)
        header[0] = IDLE
        return population, lo, hi, tick

    def _copy(self, population: int, state: SharedState, lo: int, hi: int) -> None:
        staged = self.staged[population]
        rows = hi - lo
        for name in state.written:
            np.copyto(getattr(state, name)[lo:hi], staged[name][:rows])
            fault_point(f"commit-{name}")
        state.stale[lo:hi] = 0

