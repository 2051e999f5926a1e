"""``agentloop inspect-model`` names the information gain's path and why."""

from __future__ import annotations

import pytest

from engine import GenerativeModel
from tools.cli import main
from world.models import grid_model


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
