"""agentloop's pymdp 1.x mode against pymdp 1.x itself, through committed reference runs.

``tests/fixtures/pymdp1/*.npz`` hold episodes that pymdp 1.0.4 ran in float64 (its generator,
``make_fixtures.py``, says how to regenerate them; JAX is not needed here). Each model goes
through the pymdp 1.x conversion (a stand-in agent with the same attributes and batched
arrays), then every backend steps it on the same observations. Tolerances: float64 1e-9
(tighter than the issue's 1e-6), float32 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine import Agents, GenerativeModel, InferenceConfig
from engine.errors import ConfigError, ModelError
from engine.kernels import reference as ref
from engine.model.layout import layout_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pymdp1"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz"))


def load(case: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(FIXTURES / f"{case}.npz") as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def standin_agent(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SimpleNamespace:
    """An object with the attributes of a pymdp 1.x ``Agent`` of batch size 1."""
    def listed(prefix: str) -> list[np.ndarray]:
        count = sum(1 for k in arrays if k.startswith(prefix) and k[len(prefix):].isdigit())
        return [arrays[f"{prefix}{i}"][None] for i in range(count)]

    return SimpleNamespace(
        A=listed("A_"), B=listed("B_"), C=listed("C_"), D=listed("D_"), E=arrays["E"][None],
        A_dependencies=meta["A_dependencies"], B_dependencies=meta["B_dependencies"],
        batch_size=1, policies=SimpleNamespace(policy_arr=arrays["policies"]),
        control_fac_idx=meta["control_fac_idx"], inference_algo=meta["inference_algo"],
        policy_len=meta["policy_len"], gamma=np.array([meta["gamma"]]),
        alpha=np.array([meta["alpha"]]), action_selection=meta["action_selection"],
        sampling_mode=meta["sampling_mode"], use_utility=meta["use_utility"],
        use_states_info_gain=meta["use_states_info_gain"], use_param_info_gain=False,
        num_iter=meta["num_iter"], use_inductive=False, categorical_obs=False,
        learn_A=False, learn_B=False, preprocess_fn=None, action_maps=None)


@pytest.mark.parametrize("backend,dtype,tol", [("numba", "float64", 1e-9),
                                               ("reference", "float64", 1e-9),
                                               ("xp-numpy", "float64", 1e-9),
                                               ("numba", "float32", 1e-4)])
@pytest.mark.parametrize("case", CASES)
def test_episode_matches_pymdp1(case: str, backend: str, dtype: str, tol: float) -> None:
    meta, arrays = load(case)
    agent = standin_agent(meta, arrays)
    model = GenerativeModel.from_pymdp(agent)
    config = InferenceConfig.from_pymdp(agent, dtype=dtype)
    assert config.semantics == "pymdp1"
    agents = Agents(model, 2, config, backend=backend)
    n_f = len(model.num_states)
    for t, obs in enumerate(arrays["obs"]):
        actions = agents.step(np.tile(obs, (2, 1)))
        where = f"{case} step {t}"
        for f in range(n_f):
            np.testing.assert_allclose(agents.qs[f][0], arrays[f"qs_{f}"][t], atol=tol,
                                       rtol=0, err_msg=f"{where}: qs[{f}]")
        np.testing.assert_allclose(agents.G[0], arrays["neg_efe"][t], atol=tol * 10, rtol=tol,
                                   err_msg=f"{where}: G")
        np.testing.assert_allclose(agents.q_pi[0], arrays["q_pi"][t], atol=tol, rtol=0,
                                   err_msg=f"{where}: q(pi)")
        marginals = ref.action_marginals(np.asarray(agents.q_pi, dtype=np.float64),
                                         model.policies, model.num_controls)
        for f in range(n_f):
            np.testing.assert_allclose(marginals[f][0], arrays[f"marginal_{f}"][t], atol=tol,
                                       rtol=0, err_msg=f"{where}: action marginal {f}")
        np.testing.assert_array_equal(actions[0], arrays["action"][t], err_msg=where)


def test_a_model_with_b_dependencies_saves_loads_and_refuses_pymdp0_export(
        tmp_path: Path) -> None:
    meta, arrays = load("b_dependencies_L2")
    model = GenerativeModel.from_pymdp(standin_agent(meta, arrays))
    assert model.has_B_dependencies and model.B_factor_list == ((0,), (0, 1))
    model.save(tmp_path / "deps.npz")
    again = GenerativeModel.load(tmp_path / "deps.npz")
    assert again.B_factor_list == model.B_factor_list
    assert again.content_hash() == model.content_hash()
    with pytest.raises(ConfigError, match="pymdp 0.0.7.1 has no transitions that depend"):
        model.to_pymdp()
    with pytest.raises(ConfigError, match="learning and the parameter information gain"):
        layout_of(model, InferenceConfig(learn_A=True))
    with pytest.raises(ModelError, match=r"B\[1\]: must be over the states of factors"):
        GenerativeModel(A=list(model.A), B=[model.B[0], model.B[1][:, :2]],
                        B_factor_list=[[0], [0, 1]])


def test_agent_arguments_round_trip_the_fixture() -> None:
    """``to_pymdp1``'s arguments of a converted model are the agent's own arrays again."""
    from engine.model.pymdp1_convert import pymdp1_agent_arguments

    meta, arrays = load("time_C_L2")
    agent = standin_agent(meta, arrays)
    args = pymdp1_agent_arguments(GenerativeModel.from_pymdp(agent),
                                  InferenceConfig.from_pymdp(agent, dtype="float64"))
    for key in ("A", "B", "C", "D"):
        for got, want in zip(args[key], getattr(agent, key), strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(args["E"], agent.E)
    np.testing.assert_array_equal(args["policies"], arrays["policies"])
    assert (args["gamma"], args["num_iter"], args["sampling_mode"]) == (
        meta["gamma"], meta["num_iter"], meta["sampling_mode"])


@pytest.mark.parametrize("name,value,message", [
    ("inference_algo", "mmp", "inference_algo='mmp' is not supported"),
    ("use_inductive", True, "use_inductive=True"),
    ("categorical_obs", True, "categorical_obs=True"),
    ("learn_A", True, "learn_A=True"),
])
def test_unsupported_pymdp1_options_are_refused_by_name(name: str, value: Any,
                                                        message: str) -> None:
    meta, arrays = load("one_factor_L1")
    agent = standin_agent(meta, arrays)
    setattr(agent, name, value)
    with pytest.raises(ConfigError, match=message):
        InferenceConfig.from_pymdp(agent)


def test_batch_with_different_models_is_refused() -> None:
    meta, arrays = load("one_factor_L1")
    agent = standin_agent(meta, arrays)
    agent.A = [np.concatenate([a, a[:, ::-1]]) for a in agent.A]
    with pytest.raises(ConfigError, match="A\\[0\\] differs between batch elements"):
        GenerativeModel.from_pymdp(agent)
