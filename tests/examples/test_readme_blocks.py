"""Every ```python block of README.md runs verbatim as a script (large agent counts made small)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.examples.scripts import REPO, run_script

#: agent counts the blocks use, and the smaller ones the tests run them with
SMALLER = {"100_000": "2_000", "50_000": "1_000", "10_000": "300", "5_000": "200"}


def _blocks() -> list[tuple[str, str]]:
    """(the heading above it, source) for each ```python block of the README, in order."""
    readme = (REPO / "README.md").read_text()
    found, heading = [], "top"
    for part in re.split(r"^(```python\n.*?^```)$", readme, flags=re.MULTILINE | re.DOTALL):
        if part.startswith("```python\n"):
            found.append((heading, part[len("```python\n"):-len("```")]))
        else:
            headings = re.findall(r"^#+ (.+)$", part, flags=re.MULTILINE)
            heading = headings[-1] if headings else heading
    return found


def _smaller(source: str) -> str:
    return re.sub(r"\b(" + "|".join(SMALLER) + r")\b", lambda m: SMALLER[m.group(1)], source)


BLOCKS = _blocks()
IDS = [f"{i}-{re.sub(r'[^a-z0-9]+', '-', h.lower()).strip('-')}" for i, (h, _) in
       enumerate(BLOCKS)]


def test_the_readme_blocks_are_found() -> None:
    headings = [h for h, _ in BLOCKS]
    assert len(BLOCKS) >= 4, headings
    assert "Embed agents in your own loop" in headings
    assert "Drive a PettingZoo or Gymnasium environment" in headings


def test_only_agent_counts_are_made_smaller() -> None:
    assert _smaller("n=100_000, 10_000, 1_100_000, x5_000") == "n=2_000, 300, 1_100_000, x5_000"


@pytest.mark.parametrize(("heading", "source"), BLOCKS, ids=IDS)
def test_readme_block_runs_as_a_script(heading: str, source: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(_smaller(source))
    run_script(script, cwd=tmp_path, prints=False)
