"""``agentloop inspect-model`` names the information gain's path and the policy walk, and why."""

from __future__ import annotations

import numpy as np
import pytest

from engine import GenerativeModel
from tools.cli import main
from world.models import grid_model, random_model


@pytest.mark.parametrize("args,path", [
    (["--bench", "dense-grid-10"], "split"),
    (["--bench", "multi-3x3"], "dense"),
    (["--world", "grid", "--size", "5"], "sparse"),
])
def test_prints_the_gain_path(args: list[str], path: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", *args]) == 0
    out = capsys.readouterr().out
    assert f"information gain: {path}:" in out
    assert "prefix-tree nodes" in out


@pytest.mark.parametrize("name,walk", [
    ("grid-10", "one-factor walk: one hidden factor with a sparse B"),
    ("epistemic-chain", "shared-tail walk: factors 1-2 take one action per depth"),
    ("tmaze", "shared-tail walk: factor 1 takes one action per depth"),
])
def test_prints_the_policy_walk(name: str, walk: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", "--bench", name]) == 0
    assert f"policy walk: {walk}" in capsys.readouterr().out


def test_a_model_without_a_shared_tail_takes_the_tree_walk(
        capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "two-controlled.npz"
    random_model(np.random.default_rng(0), [3, 2], [3, 2], [2, 2]).save(path)
    assert main(["inspect-model", "--model", str(path)]) == 0
    assert ("policy walk: tree walk: every node's joint belief (no shared tail of factors)"
            in capsys.readouterr().out)


def test_names_the_per_modality_table_under_pymdp1_semantics(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", "--bench", "multi-modal-4", "--semantics", "pymdp1"]) == 0
    assert "per-modality outcome table" in capsys.readouterr().out


def test_reads_a_saved_model(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    path = tmp_path / "m.npz"
    grid_model(8, dense=True).save(path)
    assert main(["inspect-model", "--model", str(path), "--policy-len", "2"]) == 0
    assert "information gain: split:" in capsys.readouterr().out
    assert isinstance(GenerativeModel.load(path), GenerativeModel)


def test_unknown_names_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect-model", "--bench", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown benchmark model 'nope'" in err[0]
