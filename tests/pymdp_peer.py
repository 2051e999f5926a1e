"""Drive pymdp 0.0.7.1 and agentloop side by side on the same observations.

Each pymdp agent is an ``Agent`` built by ``GenerativeModel.to_pymdp``; per tick it does what
``Agents.step`` does: ``infer_states`` (then ``update_A``/``update_B`` when learning),
``infer_policies`` and ``sample_action``.
"""

from __future__ import annotations

import dataclasses

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
                     observe=None) -> Mismatch:  # noqa: ANN001
    """Step ``n_agents`` agentloop agents and as many pymdp agents; return the largest gaps.

    ``observe(t, actions) -> obs`` makes observations (default: uniform random). Where an
    action differs only because the action marginal had a near-tie, pymdp's agent is handed
    agentloop's action so both keep the same history; any other action difference counts.
    """
    ours = Agents(model, n_agents, config, seed=7, backend=backend)  # type: ignore[arg-type]
    peers = [model.to_pymdp(config.replace(dtype="float64")) for _ in range(n_agents)]
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
            qs_prev = peer.qs
            qs = peer.infer_states([int(o) for o in obs[i]])
            if config.learn_A:
                peer.update_A([int(o) for o in obs[i]])
            if config.learn_B and t > 0:
                peer.update_B(qs_prev)
            q_pi, G = peer.infer_policies()
            marg = marginals(q_pi, policies, model.num_controls)
            if config.action_selection == "deterministic":
                action = peer.sample_action().astype(np.int64)
            else:
                action = actions[i].copy()
                peer.action = action.astype(np.float64)
                peer.step_time()
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
                    out.worst_pA = max(out.worst_pA, float(np.abs(p[i] - peer.pA[m]).max()))
            if config.learn_B:
                for f, p in enumerate(ours.pB):  # type: ignore[arg-type]
                    out.worst_pB = max(out.worst_pB, float(np.abs(p[i] - peer.pB[f]).max()))
            if not np.array_equal(action, actions[i]):
                tie = all(_is_near_tie(marg[f], action[f], actions[i, f])
                          for f in range(model.num_factors) if action[f] != actions[i, f])
                if tie:
                    out.tie_mismatches += 1
                else:
                    out.action_mismatches += 1
                peer.action = actions[i].astype(np.float64)
    return out


def _is_near_tie(marginal: np.ndarray, a: int, b: int) -> bool:
    return abs(float(marginal[a]) - float(marginal[b])) < TIE_GAP
