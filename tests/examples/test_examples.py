"""Every script in examples/ runs as ``python examples/NAME.py`` from the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.scripts import REPO, run_script

SCRIPTS = sorted((REPO / "examples").glob("*.py"))


def test_the_examples_folder_has_the_documented_scripts() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"embed_engine.py", "populations.py", "gymnasium_frozenlake.py",
            "pettingzoo_parallel.py", "record_replay.py"} <= names
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"README's Examples list misses {name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs_as_a_script(script: Path) -> None:
    done = run_script(script, cwd=REPO)
    assert "Traceback" not in done.stderr
