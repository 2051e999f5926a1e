"""Every compiled stage of the Numba step against its NumPy twin in ``engine.kernels.reference``.

One table (:data:`STAGES`) pairs each compiled stage with its reference stage and a runner that
feeds both the same random inputs on one model; one parametrised test runs every row on every
model of :data:`MODELS` (single- and multi-factor, sparse and dense B, A on factor subsets).
Both sides compute in float64, so they agree to rounding. Every row runs under both pymdp
generations' semantics (``InferenceConfig.semantics``); the information gain has one
reference per generation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from engine import GenerativeModel, InferenceConfig
from engine.kernels import reference as ref
from engine.kernels.numba import expected_free_energy as efe
from engine.kernels.numba import stages, state_inference
from engine.kernels.numba.scratch import (
    scratch_float_size,
    scratch_int_size,
    scratch_sizes,
    scratch_views,
    sparse_views,
)
from engine.kernels.numba.step import KernelConfig, KernelModel, kernel_config, kernel_model
from engine.model.layout import ModelLayout, layout_of
from world.models import grid_model, random_model

TOL = 1e-12
N_AGENTS = 4


def _time_dependent_preferences() -> GenerativeModel:
    """A two-factor model whose preferences change over the three planning steps."""
    base = random_model(np.random.default_rng(31), [3, 4], [3, 2], [2, 2])
    rng = np.random.default_rng(32)
    return GenerativeModel(A=list(base.A), B=list(base.B),
                           C=[rng.normal(size=(o, 3)) for o in base.num_obs], D=list(base.D))


def _b_dependencies() -> GenerativeModel:
    """Three factors; factor 1's transitions depend on factors 0 and 1, factor 2's on 0 alone
    (pymdp 1.x's B_dependencies)."""
    rng = np.random.default_rng(33)

    def columns(*shape: int) -> np.ndarray:
        a = rng.gamma(0.5, size=shape) + 1e-3
        return a / a.sum(axis=0, keepdims=True)

    return GenerativeModel(A=[columns(3, 3, 4, 2), columns(4, 4)],
                           B=[columns(3, 3, 2), columns(4, 3, 4, 3), columns(2, 3, 2)],
                           C=[rng.normal(size=3), rng.normal(size=4)],
                           A_factor_list=[[0, 1, 2], [1]],
                           B_factor_list=[[0], [0, 1], [0]])


#: (name, build) of the models every stage runs on: the shapes of test_parity_pymdp.py.
MODELS: list[tuple[str, Callable[[], GenerativeModel]]] = [
    ("grid-5", lambda: grid_model(5)),
    ("1f-1m-det", lambda: random_model(np.random.default_rng(1), [4], [5], [3],
                                       sharpness=0.1, deterministic_B=True)),
    ("1f-2m", lambda: random_model(np.random.default_rng(2), [3, 4], [4], [2])),
    ("2f-uncontrolled-det", lambda: random_model(np.random.default_rng(3), [3, 4], [3, 2],
                                                 [2, 1], deterministic_B=True)),
    ("3f-subsets", lambda: random_model(np.random.default_rng(4), [3, 2, 4], [3, 2, 2],
                                        [2, 1, 3], [[0], [1, 2], [0, 2]], sharpness=0.1)),
    ("2f-subsets-reversed-det", lambda: random_model(np.random.default_rng(5), [5, 3], [4, 3],
                                                     [3, 2], [[1], [0]],
                                                     deterministic_B=True)),
    ("3f-flat", lambda: random_model(np.random.default_rng(6), [2, 3, 2], [2, 3, 2],
                                     [2, 2, 2], sharpness=5.0)),
    ("2f-time-dependent-C", _time_dependent_preferences),
    ("3f-B-dependencies", _b_dependencies),
    ("3f-unsorted-one-state", lambda: random_model(np.random.default_rng(7), [3, 4, 2],
                                                   [3, 1, 2], [2, 1, 2],
                                                   [[2, 0], [1, 0, 2], [1]], sharpness=0.3)),
]


@dataclass
class Case:
    """One model as both sides see it, and random per-agent inputs."""

    model: GenerativeModel
    config: InferenceConfig
    layout: ModelLayout
    km: KernelModel
    kc: KernelConfig
    rng: np.random.Generator

    def beliefs(self, concentration: float = 0.5) -> list[np.ndarray]:
        """Random factor marginals, ``(N_AGENTS, S_f)`` each (peaked: some tiny entries)."""
        return [self.rng.dirichlet(np.full(s, concentration), size=N_AGENTS)
                for s in self.model.num_states]

    def flat(self, qs: list[np.ndarray], i: int) -> np.ndarray:
        return np.concatenate([q[i] for q in qs])

    def joint(self, qs: list[np.ndarray], i: int) -> np.ndarray:
        out = np.zeros(self.layout.n_joint)
        stages.joint_into(self.km, self.flat(qs, i), 0, out)
        return out

    def observations(self) -> np.ndarray:
        return np.stack([self.rng.integers(0, o, size=N_AGENTS) for o in self.model.num_obs],
                        axis=1).astype(np.int64)

    def scratch(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
        """A zeroed thread's scratch: its regions (``scratch_views``), the one-sparse-factor
        regions (``sparse_views``) and the int row (whose start holds touched outcomes)."""
        sizes = scratch_sizes(self.layout)
        fs = np.zeros(scratch_float_size(self.layout))
        its = np.zeros(scratch_int_size(self.layout), dtype=np.int64)
        return scratch_views(fs, sizes), sparse_views(self.km, fs, its, sizes), its


def _case(build: Callable[[], GenerativeModel], seed: int, semantics: str = "pymdp0") -> Case:
    model = build()
    config = InferenceConfig(policy_len=3, dtype="float64", num_iter=16, dF_tol=1e-6,
                             semantics=semantics)
    layout = layout_of(model, config)
    return Case(model, config, layout, kernel_model(layout), kernel_config(config),
                np.random.default_rng(seed))


# ---------------------------------------------------------------------------- runners
# Each runner takes (compiled stage, reference stage, case) and returns (compiled, reference)
# results of the same inputs.
def run_infer_states(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    obs, prior = case.observations(), case.beliefs()
    views, _, _ = case.scratch()
    _, post, lnprior, qL, qtmp, lnL, qj = views[:7]
    got = []
    for i in range(N_AGENTS):
        prior_i = case.flat(prior, i)
        compiled(case.km, case.kc, case.km.A_flat, obs[i], prior_i, post, lnprior, qL,
                 qtmp, lnL, qj, case.kc.num_iter)
        got.append(post.copy())
    cfg = case.config
    want = reference(case.model, obs, prior, cfg.num_iter, cfg.dF, cfg.dF_tol, cfg.semantics)
    return np.array(got), np.concatenate(want, axis=1)


def run_predict_states(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    qs = case.beliefs()
    actions = np.stack([case.rng.integers(0, u, size=N_AGENTS)
                        for u in case.model.num_controls], axis=1).astype(np.int64)
    got = []
    for i in range(N_AGENTS):
        dst = np.zeros(case.layout.state_size)
        compiled(case.km, actions[i], case.flat(qs, i), 0, dst, 0)
        got.append(dst)
    return np.array(got), np.concatenate(reference(case.model, qs, actions), axis=1)


def run_states_info_gain(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    qs = case.beliefs(concentration=0.05)
    views, _, touched = case.scratch()
    qo = views[12]
    got = [compiled(case.km, case.joint(qs, i), qo, touched) for i in range(N_AGENTS)]
    assert not qo.any(), "the stage leaves the joint outcome buffer zeroed"
    if case.config.semantics == "pymdp1":
        want = reference(case.model.full_A(), ref.joint(qs))
    else:
        want = reference(ref.joint_outcome_probabilities(case.model), ref.joint(qs))
    return np.array(got), want


def run_utility(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    qs = case.beliefs()
    qj = ref.joint(qs)
    qo = [ref.contract_states(np.broadcast_to(a, (N_AGENTS, *a.shape)), qj)
          for a in case.model.full_A()]
    C = [c[:, None] if c.ndim == 1 else c for c in case.model.C]
    ln_pref = C if case.config.semantics == "pymdp1" else [ref.spm_log(ref.softmax(c, axis=0))
                                                          for c in C]
    got, want = [], []
    for t in range(case.layout.policy_len):
        got.append([compiled(case.km, case.joint(qs, i), t) for i in range(N_AGENTS)])
        total = np.zeros(N_AGENTS)
        reference(total, qo, ln_pref, t)
        want.append(total)
    return np.array(got), np.array(want)


def run_expected_free_energy(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    qs = case.beliefs()
    views, sparse, touched = case.scratch()
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    got = []
    for i in range(N_AGENTS):
        compiled(case.km, case.kc, case.flat(qs, i), qdepth, qj, gacc, gnode, qo, touched,
                 sparse, G)
        got.append(G.copy())
    want = reference(case.model, qs, case.layout.tree.policies, case.config)
    return np.array(got), want


def run_policy_posterior(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    n_pol = case.layout.n_policies
    G = case.rng.normal(scale=3.0, size=(N_AGENTS, n_pol))
    got = []
    for i in range(N_AGENTS):
        qpi = np.zeros(n_pol)
        compiled(case.km, case.kc, G[i], qpi)
        got.append(qpi)
    E = case.model.prior_over_policies(n_pol)
    return np.array(got), reference(G, case.config.gamma, E)


def run_action_marginal(compiled, reference, case: Case) -> tuple[Any, Any]:  # noqa: ANN001
    n_pol = case.layout.n_policies
    q_pi = case.rng.dirichlet(np.full(n_pol, 0.5), size=N_AGENTS)
    got, want = [], []
    marginals = reference(q_pi, case.layout.tree.policies, case.model.num_controls)
    for f, marg_f in enumerate(marginals):
        for i in range(N_AGENTS):
            marg = np.zeros(max(int(case.layout.num_controls.max()), n_pol))
            compiled(case.km, q_pi[i], f, marg)
            got.append(marg[:marg_f.shape[1]])
            want.append(marg_f[i])
    return np.concatenate(got), np.concatenate(want)


#: (compiled stage, reference stage, runner, semantics): the Numba step's stages and their
#: twins, and the pymdp generations each row holds for.
BOTH = ("pymdp0", "pymdp1")
STAGES = [
    (state_inference.infer_states_one, ref.infer_states, run_infer_states, BOTH),
    (stages.predict_states, ref.transition_prior, run_predict_states, BOTH),
    (efe.states_info_gain, ref.states_info_gain, run_states_info_gain, ("pymdp0",)),
    (efe.states_info_gain, ref.states_info_gain_per_modality, run_states_info_gain,
     ("pymdp1",)),
    (efe.expected_utility, ref.add_utility, run_utility, BOTH),
    (efe.expected_free_energy_one, ref.expected_free_energy, run_expected_free_energy, BOTH),
    (stages.policy_posterior, ref.policy_posterior, run_policy_posterior, BOTH),
    (stages.action_marginal, ref.action_marginals, run_action_marginal, BOTH),
]
ROWS = [(compiled, reference, run, semantics) for compiled, reference, run, generations
        in STAGES for semantics in generations]


@pytest.mark.parametrize("model_index", range(len(MODELS)), ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("compiled,reference,run,semantics", ROWS,
                         ids=[f"{row[1].__name__}-{row[3]}" for row in ROWS])
def test_compiled_stage_matches_reference(compiled, reference, run,  # noqa: ANN001
                                          semantics: str, model_index: int) -> None:
    first_line = compiled.py_func.__doc__.splitlines()[0]
    assert first_line.startswith("Twin of reference."), first_line
    assert re.search(rf"\breference\.{reference.__name__}\b", first_line), first_line
    case = _case(MODELS[model_index][1], seed=1000 + model_index, semantics=semantics)
    got, want = run(compiled, reference, case)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
