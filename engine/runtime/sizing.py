"""How much memory a population or an engine will take, estimated from its model's shape before
anything is built (:func:`estimate_footprint`), and the check that it fits
(:func:`check_fits`). What is counted and the measurements behind the constants:
docs/limits.md."""

from __future__ import annotations

import dataclasses
import math
import os
import weakref
from collections.abc import Sequence

import numba
import numpy as np
import psutil

from engine.errors import ConfigError
from engine.kernels.numba.scratch import (
    HEAD_TABLE_FLOATS,
    LANE_SCALARS,
    LANE_WALK_FLOATS,
    LANE_WALK_SCALARS,
    LANES,
    head_counts,
    scratch_float_size_of,
    scratch_int_size_of,
)
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.model.limits import MAX_AGENTS, check_policies
from engine.model.outcome_tables import (
    MAX_DENSE_GAIN_TABLE,
    MAX_JOINT_TABLE,
    MAX_RESIDUAL_SHARE,
    gain_outcome_count,
)
from engine.runtime.learnt_params import own_entries

MB = 1 << 20
#: a worker process after its warm-up, less its kernel scratch (USS 79-80 MB measured)
WORKER_PROCESS_BYTES = 96 * MB
#: what loading the compiled kernels adds to a process (65 MB measured in the master)
KERNELS_BYTES = 64 * MB
#: the share of the memory the machine reports available that a run may plan to use
USABLE_FRACTION = 0.9
#: Python objects per policy-tree node while the tree is built (dicts, lists, tuples)
TREE_BUILD_BYTES_PER_NODE = 460
#: the layout's joint-outcome pass works on at most this many probabilities at a time
JOINT_PASS_FLOATS = 4_000_000
SHM_DIR = "/dev/shm"


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """The sizes of a generative model, enough to estimate its cost without its arrays.

    ``n_policies`` is the size of an explicit policy set (None: every action sequence);
    ``B_nonzeros`` and ``po_nonzeros`` the non-zeros of B and of the joint outcome table when
    known (None: dense upper bounds); ``built`` False when the model's arrays do not exist yet
    (a world about to build them), so that they are counted too.
    """

    num_states: tuple[int, ...]
    num_obs: tuple[int, ...]
    num_controls: tuple[int, ...]
    A_factor_list: tuple[tuple[int, ...], ...]
    control_fac_idx: tuple[int, ...]
    n_policies: int | None = None
    B_nonzeros: int | None = None
    po_nonzeros: int | None = None
    built: bool = True

    @staticmethod
    def of(model: GenerativeModel) -> ModelShape:
        """The shape of a built model (its non-zeros counted once per model)."""
        found = _SHAPES.get(model)
        if found is None:
            found = _SHAPES[model] = ModelShape._count(model)
        return found

    @staticmethod
    def _count(model: GenerativeModel) -> ModelShape:
        return ModelShape(
            tuple(model.num_states), tuple(model.num_obs), tuple(model.num_controls),
            tuple(model.A_factor_list), tuple(model.control_fac_idx),
            None if model.policies is None else int(model.policies.shape[0]),
            sum(int(np.count_nonzero(b)) for b in model.B), _po_nonzeros(model))

    @property
    def n_joint(self) -> int:
        return math.prod(self.num_states)

    @property
    def n_joint_obs(self) -> int:
        return math.prod(self.num_obs)

    def model_bytes(self) -> int:
        """Bytes of the model's float64 arrays (A, B, C, D, policies)."""
        floats = sum(o * math.prod(self.num_states[f] for f in deps)
                     for o, deps in zip(self.num_obs, self.A_factor_list, strict=True))
        floats += sum(s * s * u for s, u in zip(self.num_states, self.num_controls, strict=True))
        floats += sum(self.num_obs) + sum(self.num_states)
        return 8 * floats


@dataclasses.dataclass(frozen=True)
class PopulationSizes:
    """Bytes of one population's parts (``estimate_footprint`` adds them up)."""

    layout: int
    build: int
    per_agent_shm: int
    per_agent_ram: int
    journal_row: int
    scratch_per_thread: int
    belief_row: int
    model: int


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Estimated bytes of RAM (every process, the model and its layout, scratch) and of
    shared memory in /dev/shm (which also takes RAM); ``parts`` names the larger items."""

    ram_bytes: int
    shm_bytes: int
    parts: tuple[tuple[str, int], ...] = ()

    def line(self) -> str:
        """``memory: ~X MB RAM, Y MB shm`` (the run banner's line)."""
        return f"memory: ~{_mb(self.ram_bytes)} MB RAM, {_mb(self.shm_bytes)} MB shm"

    def plus(self, name: str, ram: int) -> Footprint:
        """This footprint with ``ram`` more bytes of RAM, named ``name``."""
        return Footprint(self.ram_bytes + int(ram), self.shm_bytes,
                         (*self.parts, (name, int(ram))))

    def largest(self) -> str:
        """The largest part, as ``"name ~X MB"``."""
        if not self.parts:
            return ""
        name, size = max(self.parts, key=lambda p: p[1])
        return f"{name} ~{_mb(size)} MB"


Model = GenerativeModel | ModelShape
_SHAPES: weakref.WeakKeyDictionary[GenerativeModel, ModelShape] = weakref.WeakKeyDictionary()


def population_sizes(model: Model, config: InferenceConfig, beliefs: str = "uint16",
                     learning: bool = False) -> PopulationSizes:
    """The bytes of one population's parts; ConfigError when the model's joint table or its
    policies are over the hard limits (the same checks the layout makes, made first)."""
    shape = model if isinstance(model, ModelShape) else ModelShape.of(model)
    nj, njo = shape.n_joint, gain_outcome_count(shape.num_obs, config.semantics)
    if nj * njo > MAX_JOINT_TABLE:
        raise ConfigError(f"model too large for the state information gain: {nj} joint "
                          f"states x {njo} outcomes > {MAX_JOINT_TABLE}")
    control = (shape.control_fac_idx if config.control_fac_idx is None
               else config.control_fac_idx)
    horizon = config.policy_len
    n_pol = check_policies(shape.num_controls, control, horizon, shape.n_policies)
    n_f, n_m = len(shape.num_states), len(shape.num_obs)
    s_tot, max_u, max_s = sum(shape.num_states), max(shape.num_controls), max(shape.num_states)
    joint_actions = math.prod(shape.num_controls[f] for f in set(control) if f < n_f)
    nodes = (n_pol * horizon if shape.n_policies is not None or joint_actions <= 1
             else sum(joint_actions ** t for t in range(1, horizon + 1)))
    cols = [nj if learning else math.prod(shape.num_states[f] for f in deps)
            for deps in shape.A_factor_list]
    a_flat = sum(o * k for o, k in zip(shape.num_obs, cols, strict=True))
    bt = sum(s * s * u for s, u in zip(shape.num_states, shape.num_controls, strict=True))
    b_nnz = bt if shape.B_nonzeros is None else shape.B_nonzeros
    po_nnz = (nj * njo if shape.po_nonzeros is None or config.semantics == "pymdp1"
              else shape.po_nonzeros)
    floats = (a_flat + bt + n_m * nj + n_f * (max_u + 1) + n_f * max_u * (max_s + 1)
              + 2 * b_nnz + 3 * n_f * max_u * max_s + s_tot + (horizon + 2) * nj
              + 2 * po_nnz + horizon * sum(shape.num_obs) + nodes * (1 + n_f)
              + n_pol * (2 + horizon * n_f + n_f) + 4 * (n_m + n_f + 2))
    if n_f == 1:
        floats += max_u * (max_s + 1) + b_nnz + horizon * max_u * max_s
    # the information gain's dense or split tables (at most one of them), and joint slots
    rest = njo // min(shape.num_obs)
    floats += (max(min(nj * njo, MAX_DENSE_GAIN_TABLE),
                   nj * (rest + 3) + int(2 * MAX_RESIDUAL_SHARE * max(shape.num_obs)) * nj)
               + n_f * nj)
    build = (n_pol * (48 + 16 * horizon * n_f) + nodes * TREE_BUILD_BYTES_PER_NODE
             + 24 * min(nj * njo, JOINT_PASS_FLOATS))
    d = np.dtype(config.dtype).itemsize
    qs = {"uint16": 2, "uint8": 1}.get(beliefs, d)
    per_agent = qs * s_tot + 16 * n_f + 1 + 2 * d * n_pol
    sizes = (s_tot, nj, horizon * s_tot, horizon, nodes, n_pol, njo + rest, max_u)
    scratch = 8 * (scratch_float_size_of(sizes) + scratch_int_size_of(sizes, n_m))
    if n_f == 1:
        scratch += 8 * max_u * (s_tot + njo + rest + horizon)      # dense_children_floats
    if learning:
        # the expected outcomes, and a full row of each parameter array (cpu_learning)
        scratch += 8 * (sum(shape.num_obs) + 2 * (a_flat + bt))
        floats += 2 * (a_flat + bt)             # the shared starting rows
    scratch += 8 * _head_scratch(shape.num_states, control, horizon, njo, po_nnz)
    if n_f > 1:                     # lane state inference (scratch.lane_floats); 1.x: tables
        tables = n_m * nj if config.semantics == "pymdp1" else nj     # at most one a modality
        scratch += 8 * LANES * (5 * s_tot + tables + nj + LANE_SCALARS)
        scratch += 8 * _lane_walk_scratch(shape.num_states, control, horizon, njo, nodes,
                                          n_pol)
    return PopulationSizes(
        layout=8 * floats, build=build,
        per_agent_shm=per_agent + 8 * n_m + 1 + 8, per_agent_ram=d * s_tot + 16 * n_f + 9
        + 2 * d * n_pol, journal_row=per_agent, scratch_per_thread=scratch,
        belief_row=d * s_tot, model=0 if shape.built else 2 * shape.model_bytes())


def estimate_footprint(model: Model, config: InferenceConfig, n_agents: int, workers: int, *,
                       threads: int | None = None, beliefs: str = "uint16",
                       chunk: int = 1024) -> Footprint:
    """The memory of an :class:`~engine.runtime.engine.Engine` of one population."""
    return engine_footprint([(model, config, n_agents)], workers, threads=threads,
                            beliefs=beliefs, chunk=chunk)


def engine_footprint(populations: Sequence[tuple[Model, InferenceConfig, int]], workers: int,
                     *, threads: int | None = None, beliefs: str = "uint16",
                     chunk: int = 1024) -> Footprint:
    """The memory of an engine of several populations with ``workers`` worker processes
    (0: stepped in this process), each with ``threads`` Numba threads' scratch."""
    threads = threads or numba.config.NUMBA_NUM_THREADS
    sizes = [_with_learning(population_sizes(m, c, beliefs, _learning(c)), learnt_bytes(m, c))
             for m, c, _ in populations]
    counts = [_agents(n) for _, _, n in populations]
    scratch = max(s.scratch_per_thread for s in sizes) * threads
    belief_chunk = chunk * max(s.belief_row for s in sizes)
    layouts = sum(s.layout for s in sizes)
    agents_shm = sum(n * s.per_agent_shm for n, s in zip(counts, sizes, strict=True))
    journal = workers * min(chunk, max(counts)) * sum(s.journal_row for s in sizes)
    master = (KERNELS_BYTES + layouts + max(s.build for s in sizes)
              + sum(s.model for s in sizes) + len(sizes) * scratch
              + (scratch + belief_chunk if workers == 0 else 0)
              + sum(n * 32 for n in counts))
    per_worker = WORKER_PROCESS_BYTES + scratch + belief_chunk
    parts = (("the model's arrays", sum(s.model for s in sizes)),
             ("policy tree and layout", layouts + max(s.build for s in sizes)),
             ("per-agent state", agents_shm), ("kernel scratch", scratch),
             (f"{workers} worker processes", workers * per_worker))
    return Footprint(master + workers * per_worker, agents_shm + layouts + journal,
                     tuple(p for p in parts if p[1]))


def learnt_bytes(model: Model, config: InferenceConfig) -> int:
    """Bytes of one agent's own parameters, in float64: the entries of A (over every factor)
    and pA that learning A can move, and of B and pB learning B
    (``learnt_params.compact_indices``). A model not yet built (a :class:`ModelShape`) is
    bounded above: A and B whole, with the counts of the modalities and factors learnt."""
    if not (config.learn_A or config.learn_B):
        return 0
    if isinstance(model, GenerativeModel) and (model.pA is not None or not config.learn_A) \
            and (model.pB is not None or not config.learn_B):
        return 8 * sum(own_entries(model, config))
    shape = model if isinstance(model, ModelShape) else ModelShape.of(model)
    learnt = [k for k in range(len(shape.num_obs))
              if config.modalities_to_learn == "all" or k in config.modalities_to_learn]
    a_full = shape.n_joint * sum(shape.num_obs)
    a_learnt = shape.n_joint * sum(shape.num_obs[k] for k in learnt)
    b = [x * x * u for x, u in zip(shape.num_states, shape.num_controls, strict=True)]
    b_learnt = sum(b[f] for f in range(len(b))
                   if config.factors_to_learn == "all" or f in config.factors_to_learn)
    return 8 * ((a_full + a_learnt) * bool(config.learn_A)
                + (sum(b) + b_learnt) * bool(config.learn_B))


def agents_footprint(model: Model, config: InferenceConfig, n_agents: int,
                     threads: int | None = None) -> Footprint:
    """The memory of :class:`~engine.runtime.agents.Agents` (``n_agents`` stepped in this
    process): its layout, every agent's state (and learnt parameters) and the threads'
    scratch."""
    threads = threads or numba.config.NUMBA_NUM_THREADS
    s = population_sizes(model, config, "float", _learning(config))
    n = _agents(n_agents)
    per_agent = s.per_agent_ram + learnt_bytes(model, config)
    ram = KERNELS_BYTES + s.layout + s.build + s.model + threads * s.scratch_per_thread
    parts = (("policy tree and layout", s.layout + s.build),
             ("per-agent state", n * per_agent),
             ("kernel scratch", threads * s.scratch_per_thread))
    return Footprint(ram + n * per_agent, 0, tuple(p for p in parts if p[1]))


def available() -> tuple[int, int]:
    """Bytes of memory available and bytes free in /dev/shm (0 where there is none)."""
    try:
        stat = os.statvfs(SHM_DIR)
        shm = stat.f_bavail * stat.f_frsize
    except OSError:
        shm = 0
    return int(psutil.virtual_memory().available), int(shm)


def check_fits(footprint: Footprint, what: str) -> None:
    """ConfigError naming both numbers when ``footprint`` does not fit in the memory available
    (at most ``USABLE_FRACTION`` of it) or in the free space of /dev/shm."""
    memory, shm = available()
    if footprint.shm_bytes and footprint.shm_bytes > shm:
        raise ConfigError(f"{what} need ~{_mb(footprint.shm_bytes)} MB of shared memory in "
                          f"{SHM_DIR}, more than the {_mb(shm)} MB free there")
    total = footprint.ram_bytes + footprint.shm_bytes
    usable = int(USABLE_FRACTION * memory)
    if total > usable:
        biggest = footprint.largest()
        raise ConfigError(f"{what} need ~{_mb(total)} MB of memory"
                          f"{f' ({biggest})' if biggest else ''}, more than the {_mb(usable)} "
                          f"MB available ({USABLE_FRACTION:.0%} of {_mb(memory)} MB)")


def _head_and_tail(num_states: Sequence[int], control: Sequence[int]) -> tuple[int, int, int]:
    """``(h, n_head, n_tail)`` of the multi-factor walk at most: its tail taken as the trailing
    factors no policy controls (``h`` is the number of factors when there is none)."""
    n_f = len(num_states)
    h = n_f
    while h > 1 and h - 1 not in control:
        h -= 1
    return h, math.prod(num_states[:h]), math.prod(num_states[h:])


def _head_scratch(num_states: Sequence[int], control: Sequence[int], horizon: int, njo: int,
                  po_nnz: int) -> int:
    """Floats and ints of the multi-factor walk's scratch (``scratch.head_scratch``), at most:
    its table as the larger of the dense and sparse ones."""
    h, n_head, n_tail = _head_and_tail(num_states, control)
    if h == len(num_states):
        return 0
    n_table = min(max(n_head * njo, po_nnz), HEAD_TABLE_FLOATS // horizon)
    return sum(head_counts.py_func(h, n_head, n_tail, n_table, horizon, False))


def _lane_walk_scratch(num_states: Sequence[int], control: Sequence[int], horizon: int,
                       njo: int, nodes: int, n_pol: int) -> int:
    """Floats of the lane walk's scratch (``scratch.lane_walk_rows``), at most: its table
    dense."""
    h, n_head, n_tail = _head_and_tail(num_states, control)
    if h == len(num_states):
        return 0
    rows = (horizon * (sum(num_states) + n_tail + 2 + 2 * n_head + n_head * njo + 1)
            + 2 * n_head + njo + nodes + n_pol + LANE_WALK_SCALARS)
    return min(LANES * rows, LANE_WALK_FLOATS)


def _learning(config: InferenceConfig) -> bool:
    return bool(config.learn_A or config.learn_B or config.use_param_info_gain)


def _with_learning(sizes: PopulationSizes, learnt: int) -> PopulationSizes:
    """``sizes`` with each agent's own parameters in shared memory and the journal rows."""
    return dataclasses.replace(sizes, per_agent_shm=sizes.per_agent_shm + learnt,
                               journal_row=sizes.journal_row + learnt)


def _agents(n: int) -> int:
    n = int(n)
    if not 0 <= n <= MAX_AGENTS:
        raise ConfigError(f"n_agents must be in 0..{MAX_AGENTS:,}, got {n:,}")
    return n


def _mb(n: int) -> str:
    return f"{n / MB:,.0f}"


def _po_nonzeros(model: GenerativeModel) -> int | None:
    """Non-zeros of the joint outcome table (per joint state the product over modalities of
    its A column's non-zeros); None when the joint table is over the limit anyway."""
    nj = math.prod(model.num_states)
    if nj * math.prod(model.num_obs) > MAX_JOINT_TABLE:
        return None
    per_state = np.ones(model.num_states)
    for a, deps in zip(model.A, model.A_factor_list, strict=True):
        nz = np.count_nonzero(a, axis=0).astype(np.float64)      # over the factors in deps
        order = np.argsort(deps)
        moved = np.transpose(nz, tuple(order))
        shape = [model.num_states[f] if f in deps else 1 for f in range(model.num_factors)]
        per_state = per_state * moved.reshape(shape)
    return int(per_state.sum())
