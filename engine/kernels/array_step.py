"""The agent step written once against an array module ``xp`` (NumPy or CuPy), batched over agents.

:class:`XpStepper` holds a population's state as ``xp`` arrays and the model's derived arrays
uploaded once, and steps every agent with whole-array operations (transition prior, state
inference, expected free energy over the policy tree depth by depth, q(pi), actions), in row
chunks bounded by ``scratch_bytes``; ``kernel="fused"`` runs the step as one CUDA kernel
(``fused.py``). Same arithmetic as the Numba step; learning is in ``array_learning.py``.

Design notes: ``docs/architecture.md``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.kernels.array_stages import (
    agent_keys,
    check_device_observations,
    copy_into_host,
    infer_states,
    outer_joint,
    select_actions,
    softmax,
    transition_input,
    tree_levels,
)
from engine.kernels.observations import check_observations
from engine.model.config import InferenceConfig
from engine.model.constants import EPS, PYMDP1_MINVAL
from engine.model.generative_model import GenerativeModel
from engine.model.layout import ModelLayout, layout_of

#: Default bound on the intermediates of one chunk of agents (bytes) on NumPy ...
SCRATCH_BYTES = 256 * 2**20
#: ... and on a GPU (at most an eighth of its memory), where each chunk costs some thirty
#: kernel launches: 2 GiB makes about 44,000 grid-10 agents a chunk (5,500 at 256 MiB) and a
#: tenth as many launches.
GPU_SCRATCH_BYTES = 2 * 2**30
#: The step's implementations: whole-array operations, or one fused kernel (``fused.py``).
KERNELS = ("array", "fused")
#: Environment variable that sets the kernel ``kernel="auto"`` picks (default ``"array"``).
KERNEL_ENV = "AGENTLOOP_XP_KERNEL"


def resolve_kernel(kernel: str, learns: bool = False, semantics: str = "pymdp0",
                   dependent_B: bool = False) -> str:
    """``"array"`` or ``"fused"`` for a requested kernel. ``"auto"`` takes
    ``$AGENTLOOP_XP_KERNEL``, else ``"array"`` (the path measured on a GPU so far), and
    ``"array"`` for a population that ``learns``, has pymdp 1.x's ``semantics`` or a model
    with ``dependent_B`` transitions (the fused kernel does none of them); ConfigError for an
    unknown name."""
    chosen = (os.environ.get(KERNEL_ENV) or "array") if kernel == "auto" else kernel
    if chosen not in KERNELS:
        source = f"${KERNEL_ENV}" if kernel == "auto" else "kernel"
        raise ConfigError(f"{source} must be one of {', '.join(map(repr, KERNELS))} "
                          f"(or kernel='auto'), got {chosen!r}")
    if chosen == "fused" and learns:
        if kernel == "auto":
            return "array"
        raise ConfigError("kernel 'fused' does not run Dirichlet learning or the parameter "
                          "information gain; use kernel='array'")
    if chosen == "fused" and semantics == "pymdp1":
        if kernel == "auto":
            return "array"
        raise ConfigError("kernel 'fused' computes pymdp 0.0.7.1's quantities only; use "
                          "kernel='array' for semantics='pymdp1'")
    if chosen == "fused" and dependent_B:
        if kernel == "auto":
            return "array"
        raise ConfigError("kernel 'fused' does not run transitions that depend on other "
                          "factors (B_factor_list); use kernel='array'")
    return chosen

# ------------------------------------------------------------------------------ the stepper
class XpStepper:
    """A population of ``n`` agents on one model whose state lives in ``xp`` arrays.

    Args:
        model: the shared generative model.
        n: number of agents.
        config: inference parameters (learning and parameter information gain are refused).
        seed: keys the counter-based random stream with (agent id, tick), as the CPU kernels.
        xp: the array module, ``numpy`` (CPU, what CI tests) or ``cupy`` (GPU).
        agent_id_offset: id of the first agent (a slice of a larger population).
        compute_dtype: precision of every intermediate (default float64, as the Numba step);
            float32 is faster on GPUs with slow float64 (q(pi) within 1e-5 of float64 on
            grid-5; tested to 1e-3), but argmax ties may then break differently.
        scratch_bytes: bound on the intermediates of one chunk of agents (default
            :data:`SCRATCH_BYTES`, :data:`GPU_SCRATCH_BYTES` with CuPy).
        kernel: ``"array"`` (whole-array operations), ``"fused"`` (one kernel per chunk:
            ``fused.py``; not with learning) or ``"auto"`` (:func:`resolve_kernel`); the
            resolved name is :attr:`kernel`.
    """

    #: whether this class runs Dirichlet learning (``array_learning.XpLearningStepper`` does)
    learns = False

    def __init__(self, model: GenerativeModel, n: int, config: InferenceConfig | None = None,
                 seed: int = 0, xp: ModuleType = np, agent_id_offset: int = 0,
                 compute_dtype: str = "float64", scratch_bytes: int | None = None,
                 kernel: str = "auto") -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"XpStepper: n must be a positive int, got {n!r}")
        cfg = config or InferenceConfig()
        if (cfg.learn_A or cfg.learn_B or (cfg.use_param_info_gain and (
                model.pA is not None or model.pB is not None))) and not self.learns:
            raise ConfigError("XpStepper: Dirichlet learning and parameter information gain "
                              "run in XpLearningStepper (engine.kernels.array_learning."
                              "make_xp_stepper picks it)")
        if compute_dtype not in ("float32", "float64"):
            raise ConfigError(f"XpStepper: compute_dtype must be 'float32' or 'float64', "
                              f"got {compute_dtype!r}")
        self.kernel = resolve_kernel(kernel, self.learns, cfg.semantics,
                                     model.has_B_dependencies)
        self.xp = xp
        self.model = model
        self.n = int(n)
        self.config = cfg
        self.seed = int(seed)
        self.tick = 0
        self._num_iter, self._max_depth = cfg.num_iter, cfg.policy_len
        self.layout: ModelLayout = layout_of(model, cfg)
        self._cdt = np.dtype(compute_dtype)
        self._upload_model()
        lay = self.layout
        self.scratch_bytes = int(scratch_bytes if scratch_bytes is not None
                                 else SCRATCH_BYTES if xp is np else
                                 min(GPU_SCRATCH_BYTES, xp.cuda.Device().mem_info[1] // 8))
        self._chunk = max(1, self.scratch_bytes // self._bytes_per_agent())
        sdt = lay.dtype
        self._qs = xp.empty((self.n, lay.state_size), dtype=sdt)
        self._qs_views = [self._qs[:, lay.state_offset[f]:lay.state_offset[f + 1]]
                          for f in range(lay.n_factors)]
        for f, v in enumerate(self._qs_views):
            v[...] = 1.0 / int(lay.num_states[f])          # pymdp starts from uniform beliefs
        self._prev_action = xp.zeros((self.n, lay.n_factors), dtype=xp.int64)
        self._started = xp.zeros(self.n, dtype=xp.uint8)
        self._q_pi = xp.zeros((self.n, lay.n_policies), dtype=sdt)
        self._G = xp.zeros((self.n, lay.n_policies), dtype=sdt)
        self._actions = xp.zeros((self.n, lay.n_factors), dtype=xp.int64)
        ids = np.arange(agent_id_offset, agent_id_offset + self.n, dtype=np.int64)
        self._keys = agent_keys(xp, self.seed, ids)
        self._fused = None
        if self.kernel == "fused":
            from engine.kernels.fused import FusedStep  # noqa: PLC0415  (builds with a compiler: on demand)

            self._fused = FusedStep(self.layout, cfg, xp, compute_dtype=compute_dtype)
            self._chunk = self.n                   # no intermediates outside the kernel

    # ------------------------------------------------------------------------- set-up
    def _upload_model(self) -> None:
        """Derived model arrays, uploaded once as ``xp`` arrays in the compute dtype."""
        xp, lay, model, c = self.xp, self.layout, self.model, self._cdt

        def up(a: np.ndarray, dtype: Any = c) -> Any:
            return xp.asarray(np.ascontiguousarray(a, dtype=dtype))

        n_joint = lay.n_joint
        # A of each modality over the joint state: (O_m, J), so the likelihood is one gather
        # (pymdp 1.x sums the logarithms of each modality's likelihood floored at its MINVAL)
        self._A_joint, self._A_like = [], []
        for m in range(lay.n_modalities):
            lo, hi = lay.A_offset[m], lay.A_offset[m + 1]
            compact = np.asarray(lay.A_flat[lo:hi]).reshape(int(lay.num_obs[m]), -1)
            self._A_joint.append(up(compact[:, lay.jidx[m]]))
            self._A_like.append(up(np.log(np.maximum(compact[:, lay.jidx[m]], PYMDP1_MINVAL)))
                                if lay.semantics == "pymdp1" else self._A_joint[m])
        self._gain_cut = float(lay.gain_cut[0])
        # B transposed so that q_next = q @ BT[u]: (U, S_prev, S_next), multiplied densely
        # (docs/architecture.md says why)
        self._BT = [up(np.transpose(b.reshape(b.shape[0], -1, b.shape[-1]), (2, 1, 0)))
                    for b in model.B]                                   # (U, K_f, S_f)
        self._B_deps = [tuple(d) for d in model.B_factor_list]
        self._D = [up(d) for d in model.D]
        self._utility = up(lay.utility)                    # (T, J)
        self._ambiguity = up(lay.ambiguity)                # (J,)
        po = np.zeros((n_joint, lay.n_joint_obs))
        for j in range(n_joint):
            sl = slice(lay.po_ptr[j], lay.po_ptr[j + 1])
            po[j, lay.po_idx[sl]] = lay.po_val[sl]
        self._po = up(po)                                  # (J, prod O_m)
        self._lnE = up(lay.lnE)
        self._first_action = xp.asarray(np.asarray(lay.first_action, dtype=np.int64))
        self._onehot = [up(np.eye(int(lay.num_controls[f]))[lay.first_action[:, f]])
                        for f in range(lay.n_factors)]    # (P, U_f)
        self._num_obs = xp.asarray(np.asarray(lay.num_obs, dtype=np.int64))
        self._levels, self._leaf_pos = tree_levels(xp, lay)

    def _bytes_per_agent(self) -> int:
        """Largest intermediate footprint of one agent in a step (for the chunk size)."""
        lay = self.layout
        s_tot, n_joint = lay.state_size, lay.n_joint
        worst = (lay.n_factors + 3) * n_joint + 6 * s_tot
        for level in self._levels:
            per_node = 3 * s_tot + 3 * n_joint + 2 * lay.n_joint_obs + 8
            worst = max(worst, level.n_nodes * per_node)
        worst += 4 * lay.n_policies + int(lay.num_controls.max()) * 4
        return worst * self._cdt.itemsize

    # ------------------------------------------------------------------------- state access
    @property
    def qs(self) -> list[Any]:
        """Posterior over each factor, ``(n, S_f)`` ``xp`` views in the config's dtype."""
        return self._qs_views

    @property
    def qs_flat(self) -> Any:
        """All factors' posteriors side by side, ``(n, sum S_f)`` (the CPU layout)."""
        return self._qs

    @property
    def q_pi(self) -> Any:
        """Posterior over policies after the last step, ``(n, n_policies)``."""
        return self._q_pi

    @property
    def G(self) -> Any:
        """pymdp's G (negative expected free energy) of each policy after the last step."""
        return self._G

    @property
    def actions(self) -> Any:
        """Actions chosen by the last step, ``(n, n_factors)`` int64."""
        return self._actions

    @property
    def prev_action(self) -> Any:
        """The action each agent's next transition prior uses, ``(n, n_factors)``."""
        return self._prev_action

    @property
    def started(self) -> Any:
        """1 for agents that have stepped since their last reset (their prior is ``B @ qs``)."""
        return self._started

    @property
    def chunk_size(self) -> int:
        """Agents per chunk of a step (bounded by ``scratch_bytes``)."""
        return self._chunk

    def reset(self, agents: Any = None, keep_action: bool = True) -> None:
        """A new episode for ``agents`` (indices; default all): uniform beliefs; the next
        prior is ``B[last action] @ uniform`` (pymdp's ``Agent.reset()``), or D with
        ``keep_action=False`` (or for an agent that never stepped).

        Resetting every agent also restarts the tick count (the random stream's key).
        """
        idx = slice(None) if agents is None else self.xp.asarray(agents)
        if agents is None:
            self.tick = 0
        for f, v in enumerate(self._qs_views):
            v[idx] = 1.0 / int(self.layout.num_states[f])
        if not keep_action:
            self._started[idx] = 0
            self._prev_action[idx] = 0

    def load_state(self, qs_flat: np.ndarray, prev_action: np.ndarray, started: np.ndarray,
                   rows: Any = None) -> None:
        """Overwrite the beliefs / last actions / started flags of ``rows`` (default all) from
        host (or ``xp``) arrays laid out as the CPU kernels' (``qs_flat`` is ``(k, sum S_f)``)."""
        xp = self.xp
        idx = slice(None) if rows is None else xp.asarray(rows)
        self._qs[idx] = xp.asarray(qs_flat, dtype=self._qs.dtype)
        self._prev_action[idx] = xp.asarray(prev_action, dtype=xp.int64)
        self._started[idx] = xp.asarray(started, dtype=xp.uint8)

    def copy_to_host(self, qs_flat: np.ndarray | None = None, q_pi: np.ndarray | None = None,
                     G: np.ndarray | None = None, actions: np.ndarray | None = None) -> None:
        """Copy the given parts of the state into preallocated NumPy arrays of the same shape."""
        self.copy_rows_to_host(0, self.n, qs_flat=qs_flat, q_pi=q_pi, G=G, actions=actions)

    def copy_rows_to_host(self, lo: int, hi: int, **parts: np.ndarray | None) -> None:
        """Copy rows ``lo..hi`` of the named parts of the state (``qs_flat``, ``q_pi``, ``G``,
        ``actions``, ``prev_action``, ``started``) into NumPy arrays of ``hi - lo`` rows."""
        state = {"qs_flat": self._qs, "q_pi": self._q_pi, "G": self._G,
                 "actions": self._actions, "prev_action": self._prev_action,
                 "started": self._started}
        for name, dst in parts.items():
            if dst is not None:
                copy_into_host(state[name][lo:hi], dst)

    # ------------------------------------------------------------------------- stepping
    def check_observations(self, obs: Any) -> Any:
        """Raise :class:`ObservationError` naming the agent and modality of a bad observation
        (the messages of ``check_observations``, which checks NumPy input); returns the
        observations as an int64 ``xp`` array."""
        if isinstance(obs, np.ndarray):
            return self.xp.asarray(check_observations(obs, self.n, self.layout.num_obs))
        return check_device_observations(self.xp, obs, self.n, self.layout.num_obs,
                                         self._num_obs)

    def step(self, obs: Any, tick: int | None = None, check: bool = True) -> Any:
        """Advance every agent one tick on ``obs`` (``(n, n_modalities)`` ints, host or ``xp``).

        ``tick`` keys the random stream (default: this stepper's own count, which then
        advances); ``check=False`` skips validation when the caller has done it. Returns the
        actions, ``(n, n_factors)`` int64 ``xp`` array (0 for uncontrolled factors), which the
        next step overwrites.
        """
        obs_x = self.check_observations(obs) if check else self.xp.asarray(obs)
        t = self.tick if tick is None else int(tick)
        for lo in range(0, self.n, self._chunk):
            self._step_rows(obs_x, lo, min(self.n, lo + self._chunk), t)
        if tick is None:
            self.tick += 1
        return self._actions

    def step_rows(self, obs: Any, lo: int, hi: int, tick: int, num_iter: int | None = None,
                  max_depth: int | None = None) -> None:
        """Step agents ``lo..hi`` only, on checked ``xp`` observations of all ``n`` agents, as
        tick ``tick`` (the engine steps a device population in chunks between deadline
        checks); the other agents keep their state and actions. ``num_iter`` and
        ``max_depth`` degrade the step as on the CPU (fewer fixed-point iterations; policies
        valued by their first ``max_depth`` steps)."""
        self._num_iter = self.config.num_iter if num_iter is None else int(num_iter)
        self._max_depth = self.config.policy_len if max_depth is None else int(max_depth)
        try:
            self._step_rows(obs, lo, hi, tick)
        finally:
            self._num_iter, self._max_depth = self.config.num_iter, self.config.policy_len

    def load_actions(self, actions: np.ndarray, rows: Any = None) -> None:
        """Overwrite the current actions of ``rows`` (default all)."""
        idx = slice(None) if rows is None else self.xp.asarray(rows)
        self._actions[idx] = self.xp.asarray(actions, dtype=self.xp.int64)

    def _step_rows(self, obs: Any, lo: int, hi: int, tick: int) -> None:
        xp, c = self.xp, self._cdt
        if self._fused is not None:
            self._fused(xp.ascontiguousarray(obs, dtype=xp.int64), self._qs, self._prev_action,
                        self._started, self._q_pi, self._G, self._actions, self._keys, lo, hi,
                        tick, self._num_iter, self._max_depth)
            return
        rows = slice(lo, hi)
        q_prev = [v[rows].astype(c) for v in self._qs_views]
        prior = self._prior(q_prev, rows)
        post = self._infer_states(self._likelihood(obs[rows], rows), prior)
        learn_first = self.config.learn_before_policies
        if learn_first:
            self._learn(obs[rows], rows, q_prev, post)
        G = self._policy_values(post, rows)
        q_pi = softmax(xp, G * self.config.gamma + self._lnE[None, :])
        actions = self._select(q_pi, lo, hi, tick)
        if not learn_first:
            self._learn(obs[rows], rows, q_prev, post)
        for f, v in enumerate(self._qs_views):
            v[rows] = post[f]
        self._G[rows] = G
        self._q_pi[rows] = q_pi
        self._actions[rows] = actions
        self._prev_action[rows] = actions
        self._started[rows] = 1

    def _prior(self, q_prev: list[Any], rows: slice) -> list[Any]:
        """``B[prev action] @ q`` per factor (``D`` at an agent's first step)."""
        xp = self.xp
        m = q_prev[0].shape[0]
        started = (self._started[rows] != 0)[:, None]
        ar = xp.arange(m)
        prior = []
        for f in range(self.layout.n_factors):
            pushed = self._pushed(f, transition_input(q_prev, self._B_deps[f]), rows, ar)
            prior.append(xp.where(started, pushed, self._D[f][None, :]))
        return prior

    def _pushed(self, f: int, q: Any, rows: slice, ar: Any) -> Any:
        """``B[f][:, :, a] @ q`` with ``a`` each row's previous action: every action at once
        and each row's own picked out (no per-row gather of B)."""
        every = self.xp.matmul(q[None], self._BT[f])                  # (U, m, S_f)
        return every[self._prev_action[rows, f], ar]

    def _likelihood(self, obs: Any, rows: slice) -> Any:
        """``prod_m A_m[o_m, j]`` over the joint states, ``(rows, J)``; under pymdp 1.x's
        semantics ``sum_m ln max(A_m[o_m, j], MINVAL)``."""
        like = self._A_like[0][obs[:, 0]]
        for mod in range(1, self.layout.n_modalities):
            if self.layout.semantics == "pymdp1":
                like = like + self._A_like[mod][obs[:, mod]]
            else:
                like = like * self._A_like[mod][obs[:, mod]]
        return like

    def _learn(self, obs: Any, rows: slice, q_prev: list[Any], post: list[Any]) -> None:
        """Parameter updates after state inference (none here; see ``array_learning``)."""

    def _infer_states(self, like: Any, prior: list[Any]) -> list[Any]:
        """pymdp's run_vanilla_fpi for every row (:func:`array_stages.infer_states`)."""
        return infer_states(self.xp, self.layout, self.config, like, prior, self._num_iter,
                            self._cdt)

    def _policy_values(self, post: list[Any], rows: slice) -> Any:
        """G of every policy, ``(rows, P)``: the tree walked depth by depth, all nodes at once."""
        xp, lay, cfg = self.xp, self.layout, self.config
        m = post[0].shape[0]
        parent_q = [q[None] for q in post]                  # (1, m, S_f): the root
        cum = xp.zeros((1, m), dtype=self._cdt)
        for d, level in enumerate(self._levels):
            if d >= self._max_depth:                # degraded horizon: value stops here
                cum = cum[level.parent]
                continue
            pred = []
            for f in range(lay.n_factors):
                out = xp.empty((level.n_nodes, m, int(lay.num_states[f])), dtype=self._cdt)
                src = transition_input(parent_q, self._B_deps[f])
                for u, idx, uniq, inv in level.groups[f]:
                    out[idx] = xp.matmul(src[uniq], self._BT[f][u])[inv]
                pred.append(out)
            qj = pred[0] if lay.n_factors == 1 else outer_joint(pred)     # (K, m, J)
            value = xp.zeros((level.n_nodes, m), dtype=self._cdt)
            if cfg.use_utility:
                value = value + qj @ self._utility[d]
            if cfg.use_states_info_gain:
                q_thr = xp.where(qj > self._gain_cut, qj, 0.0)
                qo = q_thr @ self._po
                value = value + q_thr @ self._ambiguity - (qo * xp.log(qo + EPS)).sum(axis=-1)
            cum = cum[level.parent] + value
            parent_q = pred
        return cum[self._leaf_pos].T

    def _select(self, q_pi: Any, lo: int, hi: int, tick: int) -> Any:
        """Actions of rows ``lo..hi`` (:func:`array_stages.select_actions`)."""
        return select_actions(self.xp, self.layout, self.config, q_pi, self._keys[lo:hi], tick,
                              self._first_action, self._onehot)
