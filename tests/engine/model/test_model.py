"""GenerativeModel: validation with precise errors, pymdp round trip, save/load, derived arrays."""

from __future__ import annotations

import numpy as np
import pytest

from engine import ConfigError, GenerativeModel, InferenceConfig, ModelError
from engine.model.layout import layout_of
from world.models import grid_model, random_model


def _small() -> dict:
    A = [np.array([[0.9, 0.2], [0.1, 0.8]])]
    B = [np.stack([np.eye(2), np.eye(2)[::-1]], axis=2)]
    return {"A": A, "B": B}


def test_valid_model_shapes() -> None:
    model = GenerativeModel(**_small())
    assert model.num_obs == (2,)
    assert model.num_states == (2,)
    assert model.num_controls == (2,)
    assert model.control_fac_idx == (0,)
    assert np.allclose(model.D[0], 0.5)
    assert not model.A[0].flags.writeable


@pytest.mark.parametrize("mutate,array,words", [
    (lambda k: k["A"].__setitem__(0, np.array([[0.9, 0.2], [0.2, 0.8]])), "A[0]", "sums to"),
    (lambda k: k["A"].__setitem__(0, np.array([[1.1, 0.2], [-0.1, 0.8]])), "A[0]", "negative"),
    (lambda k: k["A"].__setitem__(0, np.array([[np.nan, 0.2], [0.1, 0.8]])), "A[0]",
     "non-finite"),
    (lambda k: k["A"].__setitem__(0, np.array([[np.inf, 0.2], [0.1, 0.8]])), "A[0]",
     "non-finite"),
    (lambda k: k["A"].__setitem__(0, np.ones((2, 3)) / 2), "A[0]", "shape"),
    (lambda k: k["A"].__setitem__(0, np.zeros((0, 2))), "A[0]", "empty"),
    (lambda k: k["A"].__setitem__(0, np.array([["a", "b"], ["c", "d"]])), "A[0]", "real numbers"),
    (lambda k: k["B"].__setitem__(0, np.eye(2)), "B[0]", "3 dimensions"),
    (lambda k: k["B"].__setitem__(0, np.ones((2, 3, 1)) / 2), "B[0]", "square"),
    (lambda k: k.__setitem__("C", [np.zeros(3)]), "C[0]", "shape"),
    (lambda k: k.__setitem__("C", [np.zeros(2), np.zeros(2)]), "C", "modalities"),
    (lambda k: k.__setitem__("D", [np.array([0.7, 0.7])]), "D[0]", "sums to"),
    (lambda k: k.__setitem__("A_factor_list", [[3]]), "A_factor_list[0]", "out of range"),
    (lambda k: k.__setitem__("A_factor_list", [[0], [0]]), "A_factor_list", "modalities"),
    (lambda k: k.__setitem__("B_factor_list", [[0, 0]]), "B_factor_list[0]", "repeats"),
    (lambda k: k.__setitem__("pA", [np.ones((3, 2))]), "pA[0]", "shape"),
    (lambda k: k.__setitem__("pA", [np.array([[1.0, 0.0], [2.0, 0.0]])]), "pA[0]",
     "column (1,) sums to 0"),
    (lambda k: k.__setitem__("pB", [np.zeros((2, 2, 2))]), "pB[0]", "column (0, 0) sums to 0"),
    (lambda k: k.__setitem__("E", np.array([0.5, -0.5])), "E", "negative"),
    (lambda k: k.__setitem__("policies", np.array([[[2]]])), "policies", "out of range"),
    (lambda k: k.__setitem__("B", []), "B", "empty"),
])
def test_malformed_models_name_the_array(mutate, array: str, words: str) -> None:  # noqa: ANN001
    kwargs = _small()
    mutate(kwargs)
    with pytest.raises(ModelError) as info:
        GenerativeModel(**kwargs)
    assert info.value.array == array, str(info.value)
    assert words in str(info.value)


def test_normalisation_error_gives_column_and_tolerance() -> None:
    kwargs = _small()
    kwargs["A"][0] = np.array([[0.9, 0.2], [0.1, 0.7]])
    with pytest.raises(ModelError, match=r"column \(1,\) sums to 0.9.*tolerance 1e-05"):
        GenerativeModel(**kwargs)


def test_model_is_not_renormalised() -> None:
    kwargs = _small()
    kwargs["A"][0] = np.array([[0.9 + 5e-6, 0.2], [0.1, 0.8]])   # within tolerance: kept as is
    model = GenerativeModel(**kwargs)
    assert model.A[0][0, 0] == 0.9 + 5e-6


def test_pymdp_round_trip() -> None:
    pytest.importorskip("pymdp")
    rng = np.random.default_rng(0)
    model = random_model(rng, [3, 4], [3, 2], [2, 1], with_pA=True, with_pB=True)
    config = InferenceConfig(policy_len=2, gamma=4.0, dtype="float64")
    agent = model.to_pymdp(config)
    back = GenerativeModel.from_pymdp(agent)
    assert back.content_hash() != ""
    for ours, theirs in zip(model.A, back.A, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(model.B, back.B, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(back.policies, model.policies_for(2))
    assert InferenceConfig.from_pymdp(agent).gamma == 4.0
    assert InferenceConfig.from_pymdp(agent).policy_len == 2


def test_factor_subsets_expand_for_pymdp() -> None:
    rng = np.random.default_rng(1)
    model = random_model(rng, [3, 2], [4, 3], [2, 2], A_factor_list=[[1], [1, 0]])
    full = model.full_A()
    assert full[0].shape == (3, 4, 3)
    for s0 in range(4):
        np.testing.assert_array_equal(full[0][:, s0, :], model.A[0])
    np.testing.assert_array_equal(full[1], np.transpose(model.A[1], (0, 2, 1)))


def test_save_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(2)
    model = random_model(rng, [3, 2], [4, 3], [2, 1], A_factor_list=[[1], [0, 1]],
                         with_pA=True)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = GenerativeModel.load(path)
    assert loaded.content_hash() == model.content_hash()
    assert loaded.A_factor_list == model.A_factor_list


def test_load_rejects_foreign_and_truncated_files(tmp_path) -> None:  # noqa: ANN001
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ModelError, match="no 'meta'"):
        GenerativeModel.load(foreign)
    grid_model(3).save(tmp_path / "g.npz")
    data = (tmp_path / "g.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable"):
        GenerativeModel.load(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ModelError):
        GenerativeModel.load(tmp_path / "junk.npz")


def test_layout_is_cached_and_tree_shares_prefixes() -> None:
    model = grid_model(4)
    config = InferenceConfig(policy_len=3)
    layout = layout_of(model, config)
    assert layout_of(model, config) is layout
    assert layout.tree.n_nodes == 5 + 25 + 125
    assert layout.n_policies == 125
    # every leaf's path spells its policy
    policies = layout.tree.policies
    assert np.array_equal(policies[0, :, 0], [0, 0, 0])
    assert np.array_equal(policies[-1, :, 0], [4, 4, 4])


def test_policy_order_matches_pymdp() -> None:
    pytest.importorskip("pymdp")
    from pymdp.control import construct_policies

    model = random_model(np.random.default_rng(3), [2], [3, 2, 2], [3, 1, 2])
    ours = model.policies_for(2)
    theirs = construct_policies([3, 2, 2], [3, 1, 2], policy_len=2)
    np.testing.assert_array_equal(ours, np.array(theirs))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="policy_len"):
        InferenceConfig(policy_len=0)
    with pytest.raises(ConfigError, match="action_selection"):
        InferenceConfig(action_selection="greedy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gamma"):
        InferenceConfig(gamma=float("nan"))
    v1 = InferenceConfig.pymdp_v1_defaults()
    assert (v1.gamma, v1.alpha, v1.num_iter) == (1.0, 1.0, 16)
    assert InferenceConfig.from_dict(v1.to_dict()) == v1
    defaults = InferenceConfig()
    assert (defaults.gamma, defaults.alpha, defaults.num_iter, defaults.dF_tol) == (
        16.0, 16.0, 10, 0.001)


def test_C_with_too_few_time_columns_is_refused() -> None:
    kwargs = _small()
    kwargs["C"] = [np.zeros((2, 1))]
    model = GenerativeModel(**kwargs)
    with pytest.raises(ConfigError, match="time columns"):
        layout_of(model, InferenceConfig(policy_len=2))
