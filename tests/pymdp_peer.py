"""Drive pymdp 0.0.7.1 and agentloop side by side on the same observations.

Each pymdp agent is an ``Agent`` built by ``GenerativeModel.to_pymdp``; per tick it does what
``Agents.step`` does: ``infer_states`` (then ``update_A``/``update_B`` when learning),
``infer_policies`` and ``sample_action``; with ``learn_before_policies=False``, ``update_B``
after ``infer_policies`` and ``update_A`` after ``sample_action``.

A pymdp agent's tick is a deterministic function of its model, its config and its history (the
observations it was given and the actions it was handed), so its results are remembered per
history (:class:`PeerMemo`): a test that gives pymdp a history another test already gave it
(the float32 twin of a float64 test, another backend on the same model and observations)
reads the same numbers instead of computing them again. A history not seen before is computed
by a real ``Agent``, rebuilt by replaying the history's earlier ticks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pymdp import control as pymdp_control

from engine import Agents, GenerativeModel, InferenceConfig

# pymdp 0.0.7.1 adds calc_pA_info_gain's 1-element array into a float array element, which
# NumPy 2 refuses ("setting an array element with a sequence"). Unwrap the same number.
_calc_pA_info_gain = pymdp_control.calc_pA_info_gain
if not getattr(_calc_pA_info_gain, "_agentloop_scalar", False):
    def _scalar_pA_info_gain(pA, qo_pi, qs_pi):  # noqa: ANN001, ANN202
        return float(np.squeeze(_calc_pA_info_gain(pA, qo_pi, qs_pi)))

    _scalar_pA_info_gain._agentloop_scalar = True  # type: ignore[attr-defined]
    pymdp_control.calc_pA_info_gain = _scalar_pA_info_gain

#: Two action-marginal entries closer than this are a tie decided by rounding noise.
TIE_GAP = 1e-6


@dataclasses.dataclass
class Mismatch:
    worst_qs: float = 0.0
    worst_G: float = 0.0
    worst_q_pi: float = 0.0
    worst_marginal: float = 0.0
    worst_pA: float = 0.0
    worst_pB: float = 0.0
    action_mismatches: int = 0
    tie_mismatches: int = 0

    def worst(self) -> float:
        return max(self.worst_qs, self.worst_G, self.worst_q_pi, self.worst_marginal,
                   self.worst_pA, self.worst_pB)


def marginals(q_pi: np.ndarray, policies: np.ndarray, num_controls: tuple[int, ...]
              ) -> list[np.ndarray]:
    out = []
    for f, u in enumerate(num_controls):
        m = np.zeros(u)
        for p in range(len(policies)):
            m[policies[p][0, f]] += q_pi[p]
        out.append(m / m.sum())
    return out


def run_side_by_side(model: GenerativeModel, config: InferenceConfig, n_agents: int,
                     steps: int, rng: np.random.Generator, backend: str = "numba",
                     observe=None, ours=None) -> Mismatch:  # noqa: ANN001
    """Step ``n_agents`` agentloop agents and as many pymdp agents; return the largest gaps.

    ``observe(t, actions) -> obs`` makes observations (default: uniform random). Where an
    action differs only because the action marginal had a near-tie, pymdp's agent is handed
    agentloop's action so both keep the same history; any other action difference counts.
    ``ours``: the agentloop side when not ``Agents`` (anything with ``step``, ``qs``, ``G``,
    ``q_pi``, ``pA``, ``pB`` and ``policies`` as ``Agents`` has them).
    """
    if ours is None:
        ours = Agents(model, n_agents, config, seed=7, backend=backend)  # type: ignore[arg-type]
    peers = [MemoPeer(model, config) for _ in range(n_agents)]
    policies = ours.policies
    out = Mismatch()
    actions = np.zeros((n_agents, model.num_factors), dtype=np.int64)
    for t in range(steps):
        if observe is None:
            obs = np.stack([rng.integers(0, o, size=n_agents) for o in model.num_obs], axis=1)
        else:
            obs = observe(t, actions)
        actions = np.array(ours.step(obs))
        for i, peer in enumerate(peers):
            tick = peer.step(obs[i], actions[i])
            qs, q_pi, G = tick.qs, tick.q_pi, tick.G
            marg = marginals(q_pi, policies, model.num_controls)
            action = tick.action if tick.action is not None else actions[i].copy()
            for f in range(model.num_factors):
                out.worst_qs = max(out.worst_qs, float(np.abs(ours.qs[f][i] - qs[f]).max()))
            out.worst_G = max(out.worst_G, float(np.abs(ours.G[i] - G).max()))
            out.worst_q_pi = max(out.worst_q_pi, float(np.abs(ours.q_pi[i] - q_pi).max()))
            ours_marg = marginals(ours.q_pi[i].astype(np.float64), policies, model.num_controls)
            for f in range(model.num_factors):
                out.worst_marginal = max(out.worst_marginal,
                                         float(np.abs(ours_marg[f] - marg[f]).max()))
            if config.learn_A:
                for m, p in enumerate(ours.pA):  # type: ignore[arg-type]
                    out.worst_pA = max(out.worst_pA, float(np.abs(p[i] - tick.pA[m]).max()))
            if config.learn_B:
                for f, p in enumerate(ours.pB):  # type: ignore[arg-type]
                    out.worst_pB = max(out.worst_pB, float(np.abs(p[i] - tick.pB[f]).max()))
            if not np.array_equal(action, actions[i]):
                tie = all(_is_near_tie(marg[f], action[f], actions[i, f])
                          for f in range(model.num_factors) if action[f] != actions[i, f])
                if tie:
                    out.tie_mismatches += 1
                else:
                    out.action_mismatches += 1
    return out


def _is_near_tie(marginal: np.ndarray, a: int, b: int) -> bool:
    return abs(float(marginal[a]) - float(marginal[b])) < TIE_GAP


@dataclasses.dataclass(frozen=True)
class PeerTick:
    """What one pymdp agent's tick gave: its posterior, q(pi), G, the action it chose
    (None where the config's selection is stochastic: it is handed agentloop's) and, when
    learning, its pA / pB after the tick (read-only copies)."""

    qs: tuple[np.ndarray, ...]
    q_pi: np.ndarray
    G: np.ndarray
    action: np.ndarray | None
    pA: tuple[np.ndarray, ...] | None
    pB: tuple[np.ndarray, ...] | None


class PeerMemo:
    """The ticks pymdp computed, per (model, config): a tree whose edges are one tick's
    inputs, the observation and the action the agent was handed at the tick before."""

    _roots: dict[tuple[str, str], dict] = {}

    @classmethod
    def root(cls, model: GenerativeModel, config: InferenceConfig) -> dict:
        return cls._roots.setdefault((model.content_hash(), repr(config)), {})


class MemoPeer:
    """One pymdp agent that reads its ticks from :class:`PeerMemo` while its history is one
    computed before, and computes them with a real ``Agent`` (rebuilt by replaying the
    history) from the first tick that is new."""

    def __init__(self, model: GenerativeModel, config: InferenceConfig) -> None:
        self.model, self.config = model, config.replace(dtype="float64")
        self.node = PeerMemo.root(model, self.config)
        self.history: list[tuple[tuple[int, ...], np.ndarray]] = []   # (obs, action handed)
        self.agent: Any = None

    def step(self, obs: np.ndarray, handed: np.ndarray) -> PeerTick:
        """The tick on ``obs``, after which the agent holds ``handed``, agentloop's action
        (its own where the two agree; a different one counts as a tie or a mismatch)."""
        obs_key = tuple(int(o) for o in obs)
        key = (obs_key, tuple(int(a) for a in self.history[-1][1]) if self.history else None)
        entry = self.node.get(key)
        if entry is None:
            if self.agent is None:
                self.agent = self.model.to_pymdp(self.config)
                for t, (past_obs, past_handed) in enumerate(self.history):
                    self._tick(t, past_obs, past_handed)
            entry = self.node[key] = (self._tick(len(self.history), obs_key, handed), {})
        else:
            self.agent = None             # behind the memo now; rebuilt if a new tick comes
        self.history.append((obs_key, handed.copy()))
        self.node = entry[1]
        return entry[0]

    def _tick(self, t: int, obs: tuple[int, ...], handed: np.ndarray) -> PeerTick:
        peer, config = self.agent, self.config
        qs_prev = peer.qs
        qs = peer.infer_states(list(obs))
        first = config.learn_before_policies
        if config.learn_A and first:
            peer.update_A(list(obs))
        if config.learn_B and t > 0 and first:
            peer.update_B(qs_prev)
        q_pi, G = peer.infer_policies()
        if config.learn_B and t > 0 and not first:
            peer.update_B(qs_prev)        # before sample_action replaces the action it reads
        if config.action_selection == "deterministic":
            action = _frozen(peer.sample_action().astype(np.int64))
        else:
            action = None
            peer.action = handed.astype(np.float64)
            peer.step_time()
        if action is not None and not np.array_equal(action, handed):
            peer.action = handed.astype(np.float64)
        if config.learn_A and not first:
            peer.update_A(list(obs))      # pymdp's T-maze learning demo: after the action
        return PeerTick(tuple(_frozen(q) for q in qs), _frozen(q_pi), _frozen(G), action,
                        tuple(_frozen(p) for p in peer.pA) if config.learn_A else None,
                        tuple(_frozen(p) for p in peer.pB) if config.learn_B else None)


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array)
    out.setflags(write=False)
    return out
