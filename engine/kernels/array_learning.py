"""Dirichlet learning on the array backend: :class:`XpLearningStepper`, the
:class:`~engine.kernels.array_step.XpStepper` of agents that learn their own A and/or B (and the
parameter information gain), the batched twin of ``cpu_learning.py``.

Design notes: ``docs/architecture.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.kernels.array_stages import outer_joint, to_host
from engine.kernels.array_step import XpStepper
from engine.model.config import InferenceConfig
from engine.model.constants import EPS, EXP_M16
from engine.model.generative_model import GenerativeModel


def make_xp_stepper(model: GenerativeModel, n: int, config: InferenceConfig | None = None,
                    **kwargs: Any) -> XpStepper:
    """An :class:`XpLearningStepper` when ``config`` learns A or B, else an :class:`XpStepper`
    (same arguments)."""
    cfg = config or InferenceConfig()
    if uses_parameters(model, cfg):
        return XpLearningStepper(model, n, cfg, **kwargs)
    return XpStepper(model, n, cfg, **kwargs)


def uses_parameters(model: GenerativeModel, config: InferenceConfig) -> bool:
    """Whether stepping ``model`` with ``config`` needs Dirichlet parameters: learning, or the
    parameter information gain of a model that has pA or pB (pymdp ignores it otherwise)."""
    return bool(config.learn_A or config.learn_B or (config.use_param_info_gain and (
        model.pA is not None or model.pB is not None)))


class XpLearningStepper(XpStepper):
    """An :class:`XpStepper` whose agents learn A (``learn_A``) and/or B (``learn_B``), or
    value policies by the parameter information gain (``use_param_info_gain``).

    Takes the arguments of :class:`XpStepper`; the model must carry pA / pB for what is learnt.
    """

    learns = True

    def __init__(self, model: GenerativeModel, n: int, config: InferenceConfig | None = None,
                 **kwargs: Any) -> None:
        cfg = config or InferenceConfig()
        if cfg.learn_A and model.pA is None:
            raise ConfigError("learn_A needs the model's pA (Dirichlet parameters of A)")
        if cfg.learn_B and model.pB is None:
            raise ConfigError("learn_B needs the model's pB (Dirichlet parameters of B)")
        full = model.with_full_A()
        super().__init__(full, n, cfg, **kwargs)
        xp, lay, c = self.xp, self.layout, self._cdt
        self._learn_modality = [cfg.modalities_to_learn == "all" or m in cfg.modalities_to_learn
                                for m in range(lay.n_modalities)]
        self._learn_factor = [cfg.factors_to_learn == "all" or f in cfg.factors_to_learn
                              for f in range(lay.n_factors)]

        def per_agent(a: np.ndarray) -> Any:
            return xp.asarray(np.broadcast_to(np.asarray(a, dtype=c), (self.n, *a.shape)).copy())

        if cfg.learn_A:
            self._A_agent = [per_agent(np.asarray(a, dtype=c).reshape(a.shape[0], -1))
                             for a in full.full_A()]
            self._pA_agent = [per_agent(np.asarray(p).reshape(p.shape[0], -1)) for p in full.pA]
        if cfg.learn_B:
            self._B_agent = [per_agent(np.transpose(b, (2, 1, 0))) for b in full.B]
            self._pB_agent = [per_agent(np.transpose(p, (2, 1, 0))) for p in full.pB]
        self._pA_gain = bool(cfg.use_param_info_gain and full.pA is not None)
        self._pB_gain = bool(cfg.use_param_info_gain and full.pB is not None)
        if self._pA_gain and not cfg.learn_A:
            self._pA_shared = [xp.asarray(np.asarray(p, dtype=c).reshape(1, p.shape[0], -1))
                               for p in full.pA]
        if self._pB_gain and not cfg.learn_B:
            self._pB_shared = [xp.asarray(np.transpose(np.asarray(p, dtype=c), (2, 1, 0))[None])
                               for p in full.pB]
        self._lnC = xp.asarray(np.asarray(lay.lnC, dtype=c))
        self._chunk = max(1, min(self._chunk,
                                 self.scratch_bytes // self._learning_bytes_per_agent()))

    def _learning_bytes_per_agent(self) -> int:
        """Per-agent footprint of a step with the agent's own outcome table."""
        lay = self.layout
        nodes = max(level.n_nodes for level in self._levels)
        table = lay.n_joint * lay.n_joint_obs
        per_node = lay.n_joint + lay.n_joint_obs + int(lay.num_obs.sum()) + lay.state_size
        return (2 * table + nodes * per_node * 3 + self._bytes_per_agent()
                // self._cdt.itemsize) * self._cdt.itemsize

    # ------------------------------------------------------------------------- parameters
    @property
    def pA(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over A on the host, ``(n, O_m, S_1, ..., S_F)``."""
        if not self.config.learn_A:
            return None
        shape = tuple(int(s) for s in self.layout.num_states)
        return [to_host(p).reshape(self.n, p.shape[1], *shape) for p in self._pA_agent]

    @property
    def pB(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over B on the host, ``(n, S_f, S_f, U_f)``."""
        if not self.config.learn_B:
            return None
        return [np.transpose(to_host(p), (0, 3, 2, 1)) for p in self._pB_agent]

    def _A_rows(self, m: int, rows: slice) -> Any:
        """A of modality ``m`` for ``rows``: ``(k, O_m, J)``, or shared ``(1, O_m, J)``."""
        return self._A_agent[m][rows] if self.config.learn_A else self._A_joint[m][None]

    def _B_rows(self, f: int, rows: slice) -> Any:
        """B of factor ``f`` for ``rows``: ``(k, U, S, S)``, or shared ``(1, U, S, S)``."""
        return self._B_agent[f][rows] if self.config.learn_B else self._BT[f][None]

    def _wnorm_A(self, m: int, rows: slice) -> Any:
        """pymdp's spm_wnorm of pA for modality ``m``: ``(k or 1, O_m, J)``."""
        pA = self._pA_agent[m][rows] if self.config.learn_A else self._pA_shared[m]
        col = (pA + EPS).sum(axis=1, keepdims=True)
        return self.xp.where(pA > 0, 1.0 / col - 1.0 / (pA + EPS), 0.0)

    def _wnorm_B(self, f: int, rows: slice) -> Any:
        """spm_wnorm of pB for factor ``f`` (over next states): ``(k or 1, U, S, S)``."""
        pB = self._pB_agent[f][rows] if self.config.learn_B else self._pB_shared[f]
        col = (pB + EPS).sum(axis=-1, keepdims=True)
        return self.xp.where(pB > 0, 1.0 / col - 1.0 / (pB + EPS), 0.0)

    # ------------------------------------------------------------------------- step stages
    def _pushed(self, f: int, q: Any, rows: slice, ar: Any) -> Any:
        if not self.config.learn_B:
            return super()._pushed(f, q, rows, ar)
        chosen = self._B_agent[f][rows][ar, self._prev_action[rows, f]]       # (k, S, S)
        return self.xp.matmul(q[:, None, :], chosen)[:, 0]

    def _likelihood(self, obs: Any, rows: slice) -> Any:
        if not self.config.learn_A:
            return super()._likelihood(obs, rows)
        ar = self.xp.arange(obs.shape[0])
        like = self._A_agent[0][rows][ar, obs[:, 0]]
        for mod in range(1, self.layout.n_modalities):
            like = like * self._A_agent[mod][rows][ar, obs[:, mod]]
        return like

    def _learn(self, obs: Any, rows: slice, q_prev: list[Any], post: list[Any]) -> None:
        xp, cfg = self.xp, self.config
        ar = xp.arange(obs.shape[0])
        if cfg.learn_A:
            qj = outer_joint(post)
            for mod in range(self.layout.n_modalities):
                A, pA = self._A_agent[mod][rows], self._pA_agent[mod][rows]
                if self._learn_modality[mod]:
                    seen = obs[:, mod]
                    pA[ar, seen] += cfg.lr_pA * qj * (A[ar, seen] > 0)
                A[...] = pA / pA.sum(axis=1, keepdims=True)
        if cfg.learn_B:
            started = xp.nonzero(self._started[rows] != 0)[0]
            if started.size == 0:
                return
            for f in range(self.layout.n_factors):
                B, pB = self._B_agent[f][rows], self._pB_agent[f][rows]
                if self._learn_factor[f]:
                    act = self._prev_action[rows, f][started]
                    outer = q_prev[f][started][:, :, None] * post[f][started][:, None, :]
                    pB[started, act] += cfg.lr_pB * outer * (B[started, act] > 0)
                B[started] = pB[started] / pB[started].sum(axis=-1, keepdims=True)

    def _outcome_table(self, rows: slice) -> Any:
        """``p(o | j)`` over the joint outcomes, ``(k, J, prod O_m)`` (or ``(1, ...)``)."""
        table = self._A_rows(0, rows).transpose(0, 2, 1)                # (k, J, O_0)
        for mod in range(1, self.layout.n_modalities):
            nxt = self._A_rows(mod, rows).transpose(0, 2, 1)
            table = (table[..., :, None] * nxt[..., None, :]).reshape(
                *table.shape[:2], -1)
        return table

    def _policy_values(self, post: list[Any], rows: slice) -> Any:
        """G of every policy from each agent's own A and B (``cpu_learning``'s node value),
        with the pA / pB information gain when the config asks for it."""
        xp, lay, cfg = self.xp, self.layout, self.config
        m = post[0].shape[0]
        table = self._outcome_table(rows) if cfg.use_states_info_gain else None
        if table is not None:
            ambiguity = xp.where(table > 0, table * xp.log(table + EXP_M16), 0.0).sum(axis=-1)
        w_A = [self._wnorm_A(mod, rows) for mod in range(lay.n_modalities)] \
            if self._pA_gain else None
        w_B = [self._wnorm_B(f, rows) for f in range(lay.n_factors)] if self._pB_gain else None
        parent_q = [q[None] for q in post]
        cum = xp.zeros((1, m), dtype=self._cdt)
        for d, level in enumerate(self._levels):
            if d >= self._max_depth:                # degraded horizon: value stops here
                cum = cum[level.parent]
                continue
            value = xp.zeros((level.n_nodes, m), dtype=self._cdt)
            pred = []
            for f in range(lay.n_factors):
                B = self._B_rows(f, rows)
                out = xp.empty((level.n_nodes, m, int(lay.num_states[f])), dtype=self._cdt)
                for u, idx, uniq, inv in level.groups[f]:
                    parents = parent_q[f][uniq][:, :, None, :]
                    out[idx] = xp.matmul(parents, B[:, u][None])[:, :, 0][inv]
                    if w_B is not None:                  # -q_next . (W_B[u] q_prev)
                        pulled = xp.matmul(parents, w_B[f][:, u][None])[:, :, 0][inv]
                        value[idx] -= (pulled * out[idx]).sum(axis=-1)
                pred.append(out)
            qj = pred[0] if lay.n_factors == 1 else outer_joint(pred)      # (K, m, J)
            for mod in range(lay.n_modalities if (cfg.use_utility or w_A) else 0):
                A = self._A_rows(mod, rows)                              # (k, O, J)
                qo_m = xp.matmul(qj[:, :, None, :], A.transpose(0, 2, 1)[None])[:, :, 0]
                if cfg.use_utility:
                    lo, hi = lay.obs_offset[mod], lay.obs_offset[mod + 1]
                    value = value + qo_m @ self._lnC[d, lo:hi]
                if w_A is not None:
                    wq = xp.matmul(qj[:, :, None, :], w_A[mod].transpose(0, 2, 1)[None])[:, :, 0]
                    value = value - (qo_m * wq).sum(axis=-1)
            if table is not None:
                q_thr = xp.where(qj > EXP_M16, qj, 0.0)
                qo = xp.matmul(q_thr[:, :, None, :], table[None])[:, :, 0]   # (K, m, T)
                value = value + (q_thr * ambiguity[None]).sum(axis=-1) - (
                    qo * xp.log(qo + EPS)).sum(axis=-1)
            cum = cum[level.parent] + value
            parent_q = pred
        return cum[self._leaf_pos].T
