"""Packaging basics: the licence, ``agentloop --version``, ``py.typed`` shipped in every package."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from engine import version
from tools.cli import main

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_license_file_is_the_mit_licence_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the agentloop authors" in text


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"agentloop {metadata.version('agentloop')}\n"


def test_the_package_reports_its_distributions_version() -> None:
    import engine

    assert engine.__version__ == version.package_version() == PYPROJECT["project"]["version"]


def test_version_falls_back_to_pyproject_when_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.metadata, "version", missing)
    assert version.package_version() == PYPROJECT["project"]["version"]


def test_pyproject_version_reads_only_the_project_table(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.x]\nversion = "9.9"\n[project]\nname = "a"\nversion = "1.2.3"\n'
                    '[tool.y]\nversion = "8.8"\n')
    assert version.pyproject_version(path) == "1.2.3"
    path.write_text('[project]\nname = "a"\n[tool.y]\nversion = "8.8"\n')
    assert version.pyproject_version(path) == "unknown"
    assert version.pyproject_version(tmp_path / "absent.toml") == "unknown"


def test_every_installed_package_is_marked_typed_and_ships_the_marker() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [pattern.rstrip("*") for pattern in include]
    assert tops == ["engine", "world", "tools", "perf"]
    for top in tops:      # PEP 561: the marker in a top-level package covers its subpackages
        assert (REPO / top / "__init__.py").is_file()
        assert (REPO / top / "py.typed").is_file(), f"{top}/py.typed is missing"
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
