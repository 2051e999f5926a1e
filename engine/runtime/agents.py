"""Agents: N agents on one model, stepped in process. What a game loop calls each tick."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numba
import numpy as np

from engine.errors import ConfigError
from engine.kernels import cpu_learning
from engine.kernels import reference as ref
from engine.kernels.backends import array_module, resolve_backend
from engine.kernels.numba import step as numba_step
from engine.kernels.numba.population_ref import packed_kernel, step_rows_ref
from engine.kernels.observations import check_observations
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.model.layout import ModelLayout, layout_of
from engine.runtime.arguments import checked_seed
from engine.runtime.learnt_params import expand, kernel_params
from engine.runtime.sizing import agents_footprint, check_fits

Backend = Literal["numba", "reference", "cupy", "xp-numpy", "auto"]


def select_agents(agents: np.ndarray | None, n: int) -> np.ndarray | slice:
    """``agents`` (indices into a population of ``n``) checked, or every agent when None."""
    if agents is None:
        return slice(None)
    idx = np.asarray(agents)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ConfigError(f"agents must be a 1-d array of agent indices, got {idx.dtype} "
                          f"{idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ConfigError(f"agent indices must be in 0..{n - 1}")
    return idx.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """Where a population's memory goes: per agent, shared once, per thread."""

    per_agent_bytes: float
    per_agent_breakdown: dict[str, float]
    shared_bytes: int
    scratch_bytes: int


class Agents:
    """A population of agents sharing one generative model, stepped in this process.

    ``step(obs)`` runs, for every agent: the transition prior (D at the first step, else
    ``B[a] @ qs``), state inference, the expected free energy of every policy, the policy
    posterior and action selection, exactly as pymdp 0.0.7.1's ``infer_states``,
    ``infer_policies`` and ``sample_action`` would (and its Dirichlet learning when the config
    asks for it).

    Args:
        model: the shared generative model.
        n: number of agents.
        config: inference parameters (pymdp 0.0.7.1 defaults, float32 state).
        seed: keys the random stream of stochastic action selection with (agent id, tick).
        threads: Numba threads used by ``step`` (default: all Numba's threads).
        backend: ``"numba"`` (compiled, default), ``"reference"`` (plain NumPy float64),
            ``"cupy"`` (the array code of ``kernels/array_step.py`` on a GPU), ``"xp-numpy"``
            (the same code on NumPy) or ``"auto"`` (``"cupy"`` when usable, else ``"numba"``);
            ``self.backend`` is the resolved name (``engine/kernels/backends.py``).
        agent_id_offset: id of the first agent, so a slice of a larger population draws the
            same random numbers as the whole population would.
        xp_kernel: the step of the ``"cupy"`` / ``"xp-numpy"`` backends: ``"array"``,
            ``"fused"`` (one CUDA kernel; not with learning) or ``"auto"``
            (``$AGENTLOOP_XP_KERNEL``, else ``"array"``).
    """

    def __init__(self, model: GenerativeModel, n: int, config: InferenceConfig | None = None,
                 seed: int = 0, threads: int | None = None, backend: Backend = "numba",
                 agent_id_offset: int = 0, xp_kernel: str = "auto") -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"Agents: n must be a positive int, got {n!r}")
        self.seed = checked_seed(seed, "Agents")
        backend = resolve_backend(backend, config)
        self.model = model
        self.n = int(n)
        self.config = config or InferenceConfig()
        self.backend: Backend = backend
        max_threads = numba.config.NUMBA_NUM_THREADS
        self.threads = max_threads if threads is None else int(threads)
        if not 1 <= self.threads <= max_threads:
            raise ConfigError(f"Agents: threads must be in 1..{max_threads}, got {threads!r}")
        if self.config.learn_A and model.pA is None:
            raise ConfigError("Agents: learn_A needs a model with pA")
        if self.config.learn_B and model.pB is None:
            raise ConfigError("Agents: learn_B needs a model with pB")
        check_fits(agents_footprint(model, self.config, self.n, max_threads),
                   f"Agents: {self.n:,} agents")

        cfg = self.config
        self._uses_params = (cfg.learn_A or cfg.learn_B or (cfg.use_param_info_gain and (
            model.pA is not None or model.pB is not None)))
        if self._uses_params and backend == "numba":
            # learnt A gains dependence on every factor (as in pymdp): lay it out over all
            self._kernel_model = model.with_full_A()
        else:
            self._kernel_model = model
        self.layout = layout_of(self._kernel_model, self.config)
        layout = self.layout
        dtype = layout.dtype
        n_factors, s_tot = layout.n_factors, layout.state_size
        self.tick = 0
        self._qs = np.empty((self.n, s_tot), dtype=dtype)
        for f in range(n_factors):
            lo, hi = layout.state_offset[f], layout.state_offset[f + 1]
            self._qs[:, lo:hi] = 1.0 / (hi - lo)          # pymdp starts from uniform beliefs
        self._prev_action = np.zeros((self.n, n_factors), dtype=np.int64)
        self._started = np.zeros(self.n, dtype=np.uint8)
        self._q_pi = np.zeros((self.n, layout.n_policies), dtype=dtype)
        self._G = np.zeros((self.n, layout.n_policies), dtype=dtype)
        self._actions = np.zeros((self.n, n_factors), dtype=np.int64)
        self._actions_view = self._actions.view()
        self._actions_view.setflags(write=False)
        self._agent_ids = np.arange(agent_id_offset, agent_id_offset + self.n, dtype=np.int64)
        self._qs_views = [self._qs[:, layout.state_offset[f]:layout.state_offset[f + 1]]
                          for f in range(n_factors)]
        self._km = numba_step.kernel_model(layout)
        self._kref = numba_step.kernel_model_ref(self._km)
        walk = numba_step.walk_of(self._km)
        self._step_agents = numba_step.step_kernel(walk)
        self._step_packed = packed_kernel(walk)
        self._kc = numba_step.kernel_config(self.config)
        self._sizes = numba_step.scratch_sizes(layout)
        n_scratch = max_threads
        self._fscratch = np.zeros((n_scratch, numba_step.scratch_float_size(layout)))
        self._iscratch = np.zeros((n_scratch, numba_step.scratch_int_size(layout)), dtype=np.int64)
        self._policies = layout.tree.policies
        self._xp = None
        self._xp_dirty = False
        if backend in ("xp-numpy", "cupy"):
            from engine.kernels.array_learning import make_xp_stepper  # noqa: PLC0415  (CuPy: lazy)

            self._xp = make_xp_stepper(model, self.n, self.config, seed=self.seed,
                                       xp=array_module(backend),
                                       agent_id_offset=agent_id_offset, kernel=xp_kernel)
        elif backend == "reference":
            self._init_reference_learning()
        elif self._uses_params:
            self._kp = kernel_params(self._kernel_model, self.config, self.n)
            self._fscratch = np.zeros((n_scratch, cpu_learning.params_scratch_size(layout)))
        self._obs_shape = (self.n, len(layout.num_obs))
        self._rows_ref = None
        if (self.backend == "numba" and not self._uses_params
                and numba_step.runs_serial(self.n, self.threads)):
            self._rows_ref = step_rows_ref(
                self._kc, self._agent_ids, self._qs, self._prev_action, self._started,
                self._q_pi, self._G, self._actions, self._fscratch, self._iscratch, self._sizes,
                self.seed)

    # ------------------------------------------------------------------------- state access
    @property
    def qs(self) -> list[np.ndarray]:
        """Posterior over each factor, ``(n, S_f)`` views (of the last step)."""
        self._pull_device_state()
        return self._qs_views

    @property
    def q_pi(self) -> np.ndarray:
        """Posterior over policies after the last step, ``(n, n_policies)``."""
        self._pull_device_state()
        return self._q_pi

    @property
    def G(self) -> np.ndarray:
        """Negative expected free energy of each policy after the last step (pymdp's G)."""
        self._pull_device_state()
        return self._G

    def _pull_device_state(self) -> None:
        """Copy qs / q(pi) / G from the array backend's device state after a step (lazily)."""
        if self._xp is not None and self._xp_dirty:
            self._xp.copy_to_host(qs_flat=self._qs, q_pi=self._q_pi, G=self._G)
            self._xp_dirty = False

    @property
    def actions(self) -> np.ndarray:
        """Actions chosen by the last step, ``(n, n_factors)``, read-only."""
        return self._actions_view

    def reset(self, agents: np.ndarray | None = None, keep_action: bool = True) -> None:
        """Start a new episode for ``agents`` (indices; default all): beliefs back to uniform;
        learnt parameters stay. Resetting every agent also restarts the tick count (the
        random stream's key).

        ``keep_action=True`` is pymdp 0.0.7.1's ``Agent.reset()``: the last action is kept, so
        the next step's prior is ``B[:, :, last action] @ uniform`` (D only for an agent that
        never stepped). ``keep_action=False`` makes a fresh agent: the next prior is D.
        """
        idx = select_agents(agents, self.n)
        if agents is None:
            self.tick = 0
        offsets = self.layout.state_offset
        for f in range(self.layout.n_factors):
            lo, hi = offsets[f], offsets[f + 1]
            self._qs[idx, lo:hi] = 1.0 / (hi - lo)
        if not keep_action:
            self._started[idx] = 0
            self._prev_action[idx] = 0
        if self._xp is not None:
            self._xp.reset(agents if agents is None else idx, keep_action=keep_action)

    def memory(self) -> MemoryUse:
        """Bytes per agent (state and learnt parameters), shared model bytes, scratch bytes."""
        per_agent = {"qs": self._qs, "prev_action": self._prev_action, "started": self._started,
                     "q_pi": self._q_pi, "G": self._G, "actions": self._actions,
                     "agent_ids": self._agent_ids}
        if self._uses_params and self.backend == "numba":
            for name in ("A", "pA", "Bt", "pBt"):
                arr = getattr(self._kp, name)
                if arr.shape[0] == self.n and self.n > 1:
                    per_agent[name] = arr
        breakdown = {name: arr.nbytes / self.n for name, arr in per_agent.items()}
        return MemoryUse(per_agent_bytes=sum(breakdown.values()), per_agent_breakdown=breakdown,
                         shared_bytes=self.layout.nbytes(),
                         scratch_bytes=self._fscratch.nbytes + self._iscratch.nbytes)

    @property
    def kernel_params(self) -> cpu_learning.KernelParams | None:
        """The parameter kernels' arrays (Numba backend, learning or parameter gain), one row
        agent's own entries of what it learns; None where the kernels read the shared model."""
        return self._kp if self._uses_params and self.backend == "numba" else None

    @property
    def pA(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over A, ``(n, O_m, S_1, ..., S_F)`` (when learning A;
        on the Numba backend a copy, rebuilt from the agents' own entries)."""
        if not self.config.learn_A:
            return None
        if self.backend == "reference":
            return self._ref_pA
        if self._xp is not None:
            return self._xp.pA          # type: ignore[attr-defined]  (XpLearningStepper)
        return per_agent_A(self.layout, expand(self._kp, "pA"))

    @property
    def pB(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over B, ``(n, S_f, S_f, U_f)`` (when learning B; on
        the Numba backend a copy, rebuilt from the agents' own entries)."""
        if not self.config.learn_B:
            return None
        if self.backend == "reference":
            return self._ref_pB
        if self._xp is not None:
            return self._xp.pB          # type: ignore[attr-defined]  (XpLearningStepper)
        return per_agent_B(self.layout, expand(self._kp, "pBt"))

    @property
    def policies(self) -> np.ndarray:
        """The policy set, ``(n_policies, policy_len, n_factors)``."""
        return self._policies

    # ------------------------------------------------------------------------- stepping
    def check_observations(self, obs: np.ndarray, n: int | None = None) -> np.ndarray:
        """Raise :class:`ObservationError` naming the agent and modality of a bad observation.

        ``n`` is the expected number of rows (default: this population's size). Returns the
        observations as a writable C-contiguous int64 array (``obs`` itself when it is one):
        the one array type the kernels are compiled for, as any other dtype, memory layout or
        a read-only array would make Numba compile a new specialisation (tens of seconds).
        """
        return check_observations(obs, self.n if n is None else n, self.layout.num_obs)

    def step(self, obs: np.ndarray) -> np.ndarray:
        """Advance every agent one tick on ``obs`` (``(n, n_modalities)`` ints).

        Returns the chosen actions, ``(n, n_factors)`` ints (0 for uncontrolled factors):
        a read-only view that the next step overwrites; copy it to keep it. Invalid
        observations raise :class:`ObservationError` before any state changes.
        """
        if self._rows_ref is not None and _is_kernel_ready(obs, self._obs_shape):
            if self._step_packed(self._kref, self._rows_ref, obs, self.tick) < 0:
                self.tick += 1
                return self._actions_view
        obs = self.check_observations(obs)
        if self._xp is not None:
            self._xp.step(obs, tick=self.tick, check=False)
            self._xp.copy_to_host(actions=self._actions)
            self._xp_dirty = True
        elif self.backend == "reference":
            self._step_reference(obs)
        elif self._uses_params:
            numba.set_num_threads(self.threads)
            cpu_learning.step_agents_params(
                self._km, self._kc, self._kp, self._agent_ids, obs, self._qs,
                self._prev_action, self._started, self._q_pi, self._G, self._actions, self.seed,
                self.tick, self._fscratch, self._iscratch, self._sizes, self._kc.num_iter)
        else:
            numba.set_num_threads(self.threads)
            self._step_agents(
                self._kref, self._kc, self._agent_ids, obs, self._qs, self._prev_action,
                self._started, self._q_pi, self._G, self._actions, self.seed, self.tick,
                self._fscratch, self._iscratch, self._sizes, self._kc.num_iter, 1)
        self.tick += 1
        return self._actions_view

    # ------------------------------------------------------------------------- reference path
    def _init_reference_learning(self) -> None:
        model, n = self.model, self.n
        cfg = self.config
        self._ref_A = self._ref_pA = self._ref_B = self._ref_pB = None
        if cfg.learn_A:
            self._ref_A = [np.repeat(a[None], n, axis=0) for a in model.full_A()]
        if model.pA is not None and (cfg.learn_A or cfg.use_param_info_gain):
            self._ref_pA = [np.repeat(model._expand_over_factors(p, m)[None], n, axis=0)
                            for m, p in enumerate(model.pA)]
        if cfg.learn_B:
            self._ref_B = [np.repeat(b[None], n, axis=0) for b in model.B]
        if model.pB is not None and (cfg.learn_B or cfg.use_param_info_gain):
            self._ref_pB = [np.repeat(p[None], n, axis=0) for p in model.pB]

    def _step_reference(self, obs: np.ndarray) -> None:
        model, cfg = self.model, self.config
        obs = obs.astype(np.int64)
        qs_prev = [q.astype(np.float64) for q in self._qs_views]
        B_now = self._ref_B if self._ref_B is not None else [b[None] for b in model.B]
        prior = []
        for f in range(model.num_factors):
            pushed = ref.predict_factor(B_now[f], model.B_factor_list[f], qs_prev,
                                        self._prev_action[:, f])
            first = self._started == 0
            pushed[first] = model.D[f]
            prior.append(pushed)
        if self._ref_A is not None:
            qs = _infer_statesper_agent_A(model, self._ref_A, obs, prior, cfg)
        else:
            qs = ref.infer_states(model, obs, prior, cfg.num_iter, cfg.dF, cfg.dF_tol,
                                  cfg.semantics)
        if cfg.learn_before_policies:
            _learn_reference_into(self, obs, qs, qs_prev)
        G = ref.expected_free_energy(
            model, qs, self._policies, cfg,
            pA=self._ref_pA if cfg.use_param_info_gain else None,
            pB=self._ref_pB if cfg.use_param_info_gain else None,
            A=self._ref_A, B=self._ref_B)
        q_pi = ref.policy_posterior(G, cfg.gamma, model.prior_over_policies(len(self._policies)))
        actions = ref.select_actions(q_pi, self._policies, model.num_controls, cfg, self.seed,
                                     self._agent_ids, self.tick)
        if not cfg.learn_before_policies:
            _learn_reference_into(self, obs, qs, qs_prev)
        for f in range(model.num_factors):
            self._qs_views[f][:] = qs[f]
        self._G[:] = G
        self._q_pi[:] = q_pi
        self._actions[:] = actions
        self._prev_action[:] = actions
        self._started[:] = 1


def _learn_reference_into(agents: Agents, obs: np.ndarray, qs: list[np.ndarray],
                          qs_prev: list[np.ndarray]) -> None:
    """pymdp's ``update_A`` / ``update_B`` on the reference path's per-agent parameters."""
    cfg = agents.config
    if cfg.learn_A:
        agents._ref_pA, agents._ref_A = ref.update_A(agents._ref_pA, agents._ref_A, obs, qs,
                                                     cfg.lr_pA, cfg.modalities_to_learn)
    if cfg.learn_B:
        started = agents._started.astype(bool)
        if started.any():
            new_pB, new_B = ref.update_B(agents._ref_pB, agents._ref_B, agents._prev_action,
                                         qs, qs_prev, cfg.lr_pB, cfg.factors_to_learn)
            for f in range(agents.model.num_factors):
                agents._ref_pB[f][started] = new_pB[f][started]
                agents._ref_B[f][started] = new_B[f][started]


def _infer_statesper_agent_A(model: GenerativeModel, A: list[np.ndarray], obs: np.ndarray,
                              prior: list[np.ndarray], cfg: InferenceConfig) -> list[np.ndarray]:
    """State inference when every agent has learnt its own A (reference path)."""
    out: list[list[np.ndarray]] = [[] for _ in range(model.num_factors)]
    for i in range(obs.shape[0]):
        agent_model = _AgentA(model, [a[i] for a in A])
        qs_i = ref.infer_states(agent_model, obs[i:i + 1], [p[i:i + 1] for p in prior],  # type: ignore[arg-type]
                                cfg.num_iter, cfg.dF, cfg.dF_tol)
        for f in range(model.num_factors):
            out[f].append(qs_i[f][0])
    return [np.array(rows) for rows in out]


class _AgentA:
    """The slice of a model ``ref.infer_states`` reads, with one agent's learnt A."""

    def __init__(self, model: GenerativeModel, A_full: list[np.ndarray]) -> None:
        self.num_states = model.num_states
        self.num_factors = model.num_factors
        self._A = A_full

    def full_A(self) -> list[np.ndarray]:
        return self._A


def per_agent_A(layout: ModelLayout, flat: np.ndarray) -> list[np.ndarray]:
    """Views of flat per-agent A rows (over every factor) as ``(n, O_m, S_1, ..., S_F)``."""
    shape = tuple(int(s) for s in layout.num_states)
    return [flat[:, layout.A_offset[m]:layout.A_offset[m + 1]].reshape(
        flat.shape[0], int(layout.num_obs[m]), *shape) for m in range(layout.n_modalities)]


def per_agent_B(layout: ModelLayout, flat: np.ndarray) -> list[np.ndarray]:
    """Views of flat per-agent transposed B rows as ``(n, S_f, S_f, U_f)``."""
    out = []
    for f in range(layout.n_factors):
        s, u = int(layout.num_states[f]), int(layout.num_controls[f])
        block = flat[:, layout.B_offset[f]:layout.B_offset[f + 1]].reshape(flat.shape[0], u, s, s)
        out.append(np.moveaxis(block, 1, 3))
    return out


def _is_kernel_ready(obs: object, shape: tuple[int, int]) -> bool:
    """``obs`` is what the compiled step takes as it is: a writable C-contiguous int64 array
    of the population's shape (its range is checked in the step)."""
    return (type(obs) is np.ndarray and obs.dtype == np.int64 and obs.shape == shape
            and obs.flags.c_contiguous and obs.flags.writeable)
