"""The shared-memory state of a run: per population its model and per-agent arrays, and one
control block.

The master creates them (``SharedState.create``, ``ControlBlock.create``); each worker attaches
them from the picklable :class:`StateSpec` (``SharedState.attach``, ``ControlBlock.attach``).
Model arrays are written once and attached read-only; per-agent arrays are structure-of-arrays
with the agent axis first. Each population's segments are named with its own prefix.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engine.kernels import cpu_learning
from engine.kernels.beliefs import BeliefCodec
from engine.kernels.numba import step as numba_step
from engine.model.config import InferenceConfig
from engine.model.layout import ModelLayout
from engine.runtime.learnt_params import PARAM_NAMES, ChunkParams, ParamSpec, field_name
from engine.runtime.shm import Run

#: control block fields (one float64 each), then per worker its heartbeat (last tick done)
#: and its busy seconds in that tick
CONTROL_FIELDS = ("tick", "deadline", "stop", "level", "margin")
#: the per-agent arrays every tick writes (beliefs as stored: codes when quantized); a learning
#: population's own parameter arrays follow them
WRITTEN_FIELDS = ("qs", "prev_action", "started", "q_pi", "G", "actions")


@dataclasses.dataclass(frozen=True)
class StateSpec:
    """Everything a worker needs to attach a population's shared state (picklable)."""

    run_id: str
    prefix: str
    id_offset: int
    n_agents: int
    seed: int
    config: dict[str, Any]
    model_arrays: dict[str, tuple[tuple[int, ...], str]]
    dtype: str
    state_size: int
    n_factors: int
    n_modalities: int
    n_policies: int
    scratch_sizes: tuple[int, ...]
    float_scratch: int
    int_scratch: int
    beliefs: str
    state_offset: tuple[int, ...]
    params: ParamSpec | None = None
    """A learning population's parameter arrays (None: the model's, shared)."""

    @property
    def quantized(self) -> bool:
        """Beliefs live in shared memory as codes (``beliefs`` names the codec)."""
        return self.beliefs != "float"

    def per_agent_arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        n = self.n_agents
        return {
            "obs": ((n, self.n_modalities), "int64"),
            "qs": ((n, self.state_size),
                   BeliefCodec(self.beliefs, np.array(self.state_offset)).dtype.str
                   if self.quantized else self.dtype),
            "prev_action": ((n, self.n_factors), "int64"),
            "started": ((n,), "uint8"),
            "q_pi": ((n, self.n_policies), self.dtype),
            "G": ((n, self.n_policies), self.dtype),
            "actions": ((n, self.n_factors), "int64"),
            "stale": ((n,), "uint8"),
            "agent_ids": ((n,), "int64"),
            **(self.params.per_agent_arrays(n) if self.params is not None else {}),
        }

    def own_params(self) -> tuple[str, ...]:
        """A learning population's per-agent parameter arrays (none otherwise)."""
        return tuple(self.params.per_agent_arrays(0)) if self.params is not None else ()

    def written_arrays(self) -> tuple[str, ...]:
        """The per-agent arrays a tick writes: beliefs, actions, policy values and, learning,
        the agents' own parameters."""
        return (*WRITTEN_FIELDS, *self.own_params())

    def state_arrays(self) -> tuple[str, ...]:
        """The per-agent arrays a run continues from (``Engine.agent_state``)."""
        return ("qs", "prev_action", "started", "actions", *self.own_params())


class SharedState:
    """Views of a population's segments, in this process."""

    def __init__(self, spec: StateSpec, arrays: dict[str, np.ndarray],
                 km: numba_step.KernelModel, params: dict[str, np.ndarray] | None = None
                 ) -> None:
        self.spec = spec
        self.km = km
        self.kref = numba_step.kernel_model_ref(km)
        walk = numba_step.walk_of(km)
        self.step_agents = numba_step.step_kernel(walk)
        self.step_serial = numba_step.serial_kernel(walk)
        self.codec_instance = (BeliefCodec(spec.beliefs, np.array(spec.state_offset))
                               if spec.quantized else None)
        config = InferenceConfig.from_dict(spec.config)
        self.kc = numba_step.kernel_config(config)
        # kernel settings per degradation level (0 full, 1 fewer iterations, 2+ one step)
        fewer = max(1, config.num_iter // 2)
        self.kc_by_level = (self.kc, numba_step.kernel_config(config, num_iter=fewer),
                            numba_step.kernel_config(config, num_iter=fewer, max_depth=1),
                            numba_step.kernel_config(config, num_iter=fewer, max_depth=1),
                            self.kc)
        for name, arr in arrays.items():
            setattr(self, name, arr)
        #: the arrays a commit copies, and of them the agents' own parameters (once, not
        #: per chunk)
        self.written = spec.written_arrays()
        self.own_params = spec.own_params()
        #: a learning population's parameters (None: the kernels read the shared model)
        self.params: ChunkParams | None = None
        if spec.params is not None:
            self.params = ChunkParams(spec.params, spec.n_agents, {
                name: arrays[field_name(name)]
                for name, mine in zip(PARAM_NAMES, spec.params.per_agent, strict=True) if mine},
                params)
        self.obs: np.ndarray
        self.qs: np.ndarray
        self.prev_action: np.ndarray
        self.started: np.ndarray
        self.q_pi: np.ndarray
        self.G: np.ndarray
        self.actions: np.ndarray
        self.stale: np.ndarray
        self.agent_ids: np.ndarray

    @staticmethod
    def create(run: Run, layout: ModelLayout, config: InferenceConfig, n_agents: int,
               seed: int, beliefs: str = "uint16", prefix: str = "",
               id_offset: int = 0, params: cpu_learning.KernelParams | None = None
               ) -> SharedState:
        """Share ``layout``'s kernel arrays and create ``n_agents`` agents' arrays.

        Segment names start with ``prefix``; agent ids (the random stream's key) run from
        ``id_offset``, so populations of one engine draw independent streams. ``params``: a
        learning population's starting parameters (``Agents.kernel_params``): the shared
        starting rows, and each agent's own entries of them.
        """
        km_local = numba_step.kernel_model(layout)
        model_arrays = {}
        shared: dict[str, np.ndarray] = {}
        for name, arr in zip(numba_step.KernelModel._fields, km_local, strict=True):
            shared[name] = run.share_array(f"{prefix}model-{name}", np.ascontiguousarray(arr))
            model_arrays[name] = (tuple(arr.shape), arr.dtype.str)
        param_spec = None if params is None else ParamSpec.of(params, layout)
        shared_params = {}
        if params is not None:
            for name in PARAM_NAMES:
                row = getattr(params, f"{name}0")
                # writable, as workers attach it: a read-only array is another Numba type
                shared_params[name] = run.create_array(f"{prefix}param-{name}", (1, row.size),
                                                       "float64")
                shared_params[name][0] = row
        spec = StateSpec(
            run_id=run.run_id, prefix=prefix, id_offset=id_offset, n_agents=n_agents, seed=seed,
            config=config.to_dict(), model_arrays=model_arrays, dtype=layout.dtype.str,
            state_size=layout.state_size, n_factors=layout.n_factors,
            n_modalities=layout.n_modalities, n_policies=layout.n_policies,
            scratch_sizes=numba_step.scratch_sizes(layout),
            float_scratch=(numba_step.scratch_float_size(layout) if params is None
                           else cpu_learning.params_scratch_size(layout)),
            int_scratch=numba_step.scratch_int_size(layout), beliefs=beliefs,
            state_offset=tuple(int(x) for x in layout.state_offset), params=param_spec)
        arrays = {name: run.create_array(prefix + name, shape, dtype)
                  for name, (shape, dtype) in spec.per_agent_arrays().items()}
        if spec.quantized:
            # a log code is relative to the factor's largest entry: uniform is all code 0,
            # which the new (zeroed) segment already holds
            assert BeliefCodec(beliefs, layout.state_offset).name in ("uint16", "uint8")
        else:
            for f in range(layout.n_factors):
                lo, hi = layout.state_offset[f], layout.state_offset[f + 1]
                arrays["qs"][:, lo:hi] = 1.0 / (hi - lo)
        arrays["agent_ids"][:] = np.arange(id_offset, id_offset + n_agents)
        if params is not None:
            for name in spec.own_params():
                arrays[name][:] = getattr(params, name.removeprefix("param_"))[0]
        km = numba_step.kernel_model_from(lambda name: shared[name])
        return SharedState(spec, arrays, km, shared_params)

    @staticmethod
    def attach(run: Run, spec: StateSpec) -> SharedState:
        shared = {name: run.attach_array(f"{spec.prefix}model-{name}", shape, dtype,
                                         readonly=True)
                  for name, (shape, dtype) in spec.model_arrays.items()}
        arrays = {name: run.attach_array(spec.prefix + name, shape, dtype)
                  for name, (shape, dtype) in spec.per_agent_arrays().items()}
        params = {}
        if spec.params is not None:
            for name in PARAM_NAMES:
                size = spec.params.sizes[PARAM_NAMES.index(name)]
                params[name] = run.attach_array(f"{spec.prefix}param-{name}", (1, size),
                                                "float64")
        km = numba_step.kernel_model_from(lambda name: shared[name])
        return SharedState(spec, arrays, km, params)


class ControlBlock:
    """The run's control block: tick, deadline, stop flag, level, and per worker its heartbeat
    (last tick done) and busy seconds in that tick. One float64 each, in one segment."""

    def __init__(self, control: np.ndarray, n_workers: int) -> None:
        self.control = control
        self.n_workers = n_workers

    @staticmethod
    def size(n_workers: int) -> int:
        return len(CONTROL_FIELDS) + 2 * n_workers

    @staticmethod
    def create(run: Run, n_workers: int) -> ControlBlock:
        return ControlBlock(run.create_array("control", (ControlBlock.size(n_workers),),
                                             "float64"), n_workers)

    @staticmethod
    def attach(run: Run, n_workers: int) -> ControlBlock:
        return ControlBlock(run.attach_array("control", (ControlBlock.size(n_workers),),
                                             "float64"), n_workers)

    def get(self, field: str) -> float:
        return float(self.control[CONTROL_FIELDS.index(field)])

    def set(self, field: str, value: float) -> None:
        self.control[CONTROL_FIELDS.index(field)] = value

    def heartbeat(self, worker: int) -> float:
        return float(self.control[len(CONTROL_FIELDS) + worker])

    def busy(self, worker: int) -> float:
        return float(self.control[len(CONTROL_FIELDS) + self.n_workers + worker])

    def beat(self, worker: int, tick: float, busy_s: float) -> None:
        self.control[len(CONTROL_FIELDS) + self.n_workers + worker] = busy_s
        self.control[len(CONTROL_FIELDS) + worker] = tick
